"""The ``dc2flow`` command line: one verb per stage, each a thin wrapper around one call.

Every verb prints ``dc2flow <verb>: error: <message>`` and exits 1 for a
:class:`~dc2flow.errors.Dc2flowError`; any other exception is a bug and keeps its traceback.

Science errors are not retried: with ``--failure-record FILE`` (the rules pass one per job) a
failed verb leaves a record, and the same command on unchanged inputs stops at once with exit
status 3 (:mod:`dc2flow.failures`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import io, retry
from .errors import Dc2flowError
from .failures import EXIT_ERROR, EXIT_NOT_RETRIED

log = logging.getLogger("dc2flow")

def sensor_paths(template: str, sensors: str) -> list[str]:
    """One path per sensor of a comma-separated list, from a template naming ``{det_name}`` and
    ``{det_num}`` (3 digits): rules pass a template and the sensor list instead of one path per
    sensor, so that no command line grows with the campaign (Linux refuses any single argument over
    128 KiB; 189 paths under a long output root come close)."""
    from .camera import get_sensor

    names = [s for s in sensors.split(",") if s]
    return [template.replace("{det_name}", name).replace("{det_num}", f"{get_sensor(name).det_num:03d}")
            for name in names]


def _listed(paths, template, sensors, option):
    """Paths given one by one, or as ``--*-template`` with ``--sensors`` (not both)."""
    if template is None:
        return paths
    if paths:
        from .errors import ConfigError

        raise ConfigError(option, template, "given with a list of paths as well: give one or the other")
    if not sensors:
        from .errors import ConfigError

        raise ConfigError(option, template, "needs --sensors R22_S11,R22_S12,...")
    return sensor_paths(template, sensors)


TEMPLATE_HELP = "a path with {det_name} and {det_num} for each of --sensors, instead of a list"
OPTIONS_HELP = ("physics options (sections camera, scene, partition, render) as JSON text or @FILE (YAML/JSON); "
                "missing keys take the defaults of config/config.yaml")


def _cmd_parse(args) -> None:
    from .catalog import read_catalog
    from .io import sha256_file, write_json

    visit, skips = read_catalog(args.catalog, objects_out=args.objects, chunk_rows=args.chunk_rows)
    files = list(dict.fromkeys([args.catalog, *skips.sources]))  # the catalog first, then its includes
    write_json(args.sources, {"visit": visit.visit, "files": [[f, sha256_file(f)] for f in files],
                              "skips": skips.summary()})
    visit.write_json(args.visit_json)
    log.info("%s: visit %d, %s", args.catalog, visit.visit, skips.summary())


def _cmd_opsim_visit(args) -> None:
    from .catalog import OBJECT_SCHEMA
    from .io import atomic_output, sha256_file, write_json
    from .opsim import read_visit

    visit = read_visit(args.opsim_db, args.visit, args.snap)
    if args.sky_catalog:
        from .skycatalog import read_sky_catalog

        counts, _ = read_sky_catalog(args.sky_catalog, visit, objects_out=args.objects,
                                     sky_catalog_root=args.sky_catalog_root, radius_deg=args.radius_deg)
        files, summary = counts.files, counts.summary()
    else:
        import pyarrow.parquet as pq

        log.warning("%s: visit %d has no sky catalog: the object table is empty", args.opsim_db, visit.visit)
        with atomic_output(args.objects) as tmp:
            pq.write_table(OBJECT_SCHEMA.empty_table(), tmp)
        files, summary = [], "no sky catalog: no objects"
    files = list(dict.fromkeys([args.opsim_db, *files]))
    write_json(args.sources, {"visit": visit.visit, "snap": visit.snap,
                              "files": [[f, sha256_file(f)] for f in files], "skips": summary})
    visit.write_json(args.visit_json)
    log.info("%s: visit %d snap %d, %s", args.opsim_db, visit.visit, visit.snap, summary)


def _cmd_partition(args) -> None:
    import os

    from .catalog import Visit
    from .config import parse_options
    from .partition import partition_visit, write_index

    options = parse_options(args.options)
    sensors = [s for s in args.sensors.split(",") if s]
    outputs = {name: os.path.join(args.out_dir, f"{name}.parquet") for name in sensors}
    counts = partition_visit(Visit.read_json(args.visit_json), args.objects, outputs, options, wcs_out=args.wcs)
    if args.index:
        write_index(args.index, outputs, counts)


def _cmd_render(args) -> None:
    from .catalog import Visit
    from .config import load_json, options_hash, parse_options
    from .render import Provenance, render_sensor

    options = parse_options(args.options)
    files = tuple(map(tuple, load_json(args.sources)["files"])) if args.sources else ()
    prov = Provenance(catalog_files=files, config_hash=options_hash(options),
                      container_image=options["render"]["container_image"])
    render_sensor(Visit.read_json(args.visit_json), args.partition, args.det_name, options,
                  args.out, args.truth, prov, wcs_path=args.wcs, screens_path=args.screens)
    if args.record:  # the registry row, while the image is in the page cache (no extra job per sensor)
        from .registry import bundle_from_plan, make_record, write_record

        bundle = args.bundle or (bundle_from_plan(args.plan, args.out) if args.plan else None)
        if bundle and args.shard:  # bundle names restart in each shard's plan
            bundle = f"{args.shard}/{bundle}"
        write_record(args.record, make_record(args.out, args.record_root or ".", bundle))


def _cmd_screens(args) -> None:
    from .atmpsf import build_screens
    from .catalog import Visit
    from .config import parse_options
    from .partition import VisitConditions

    visit, scene = Visit.read_json(args.visit_json), parse_options(args.options)["scene"]
    record = build_screens(visit, scene, VisitConditions.from_visit(visit, scene).fwhm_geom_arcsec, args.out)
    log.info("%s: %d layers, %s", args.out, len(record["layers_galsim"]),
             ", ".join(f"{a['file']} {a['bytes'] / 1e6:.1f} MB" for a in record["arrays"].values()))


def _cmd_estimate(args) -> None:
    import os

    from .camera import camera_for
    from .catalog import Visit
    from .config import parse_options
    from .estimate import ResourceModel, estimate_visit, write_estimates

    options = parse_options(args.options)
    model = ResourceModel.read(args.model)
    sensors = [s for s in args.sensors.split(",") if s]
    parts = {name: os.path.join(args.partition_dir, f"{name}.parquet") for name in sensors}
    rows = estimate_visit(Visit.read_json(args.visit_json), parts, model, options["render"]["fft_flux_threshold"],
                          args.job_overhead_gb, args.min_mem_gb, options["scene"], camera_for(options))
    write_estimates(args.out, rows)


def _cmd_calibrate(args) -> None:
    from .calibrate import calibrate, format_report, plot, read_records

    records = read_records(args.estimates, args.benchmarks)
    model, report = calibrate(records, holdout=args.holdout, quantile=args.quantile)
    model.write(args.out)
    if args.plot:
        plot(records, model, args.holdout, args.plot)
    print(f"{len(records)} render jobs; model written to {args.out}")
    print(format_report(report))


def _cmd_bundle(args) -> None:
    from .packing import Node, format_summary, run_cli

    node = Node(memory_gb=args.node_memory_gb, cores=args.node_cores, visit_overhead_gb=args.visit_overhead_gb,
                time_limit_s=args.time_limit_s)
    jobs = list(args.jobs)
    if args.estimates_dir:  # one table per exposure of --visits (no path list on the command line)
        import os

        from .campaign import parse_exposure

        # exposure keys (00449053, 00449053-1); a bare visit number is its snap 0
        keys = [parse_exposure(v.zfill(8) if v.isdigit() else v).key for v in args.visits.split(",") if v]
        jobs += [os.path.join(args.estimates_dir, f"{key}.tsv") for key in keys]
    if not jobs:
        from .errors import ConfigError

        raise ConfigError("jobs", "", "no jobs tables given: name IN.csv ..., or --estimates-dir DIR --visits V1,V2")
    summary = run_cli(jobs, args.out, node, args.solver, args.solve_time_limit_s, args.summary)
    print(format_summary(summary))


def _cmd_forecast(args) -> None:
    import json

    from .config import selected_sensors
    from .errors import ConfigError
    from .forecast import DEFAULT_NODES, format_forecast, forecast, read_profile

    overrides = {}
    bundle = {k: v for k, v in (("node_memory_gb", args.node_memory_gb), ("node_cores", args.node_cores),
                                ("visit_overhead_gb", args.visit_overhead_gb), ("time_limit_s", args.time_limit_s))
              if v is not None}
    if bundle:
        overrides["bundle"] = bundle
    if args.job_startup_s is not None:
        overrides["forecast"] = {"job_startup_s": args.job_startup_s}
    if args.sensors:
        overrides["sensors"] = "all" if args.sensors == "all" else [s for s in args.sensors.split(",") if s]
    config, site = read_profile(args.profile, args.configfile, overrides)
    catalogs = args.catalogs or config["catalogs"]
    if not catalogs:
        raise ConfigError("catalogs", [], "no catalogs given", "paths or globs on the command line or in --configfile")
    result = forecast(catalogs, selected_sensors(config), config, site, sample=args.sample, model_path=args.model,
                      estimates_dir=args.estimates_dir, nodes=args.nodes or list(DEFAULT_NODES), workdir=args.workdir)
    print(json.dumps(result.to_dict(), indent=1) if args.json else format_forecast(result))


def _cmd_manifest(args) -> None:
    from .campaign import write_manifest

    write_manifest(args.images, args.out)


CAMERA_HELP = ("an obs_lsst-style camera policy folder (rafts.yaml, cameraHeader.yaml, cameraTransforms.yaml, "
               "R??.yaml) [default: camera.description; null: the packaged LSSTCam tables]")
VALIDATION_HELP = ("the config section 'validation' as JSON text or @FILE (YAML/JSON); missing keys take the "
                   "defaults of config/config.yaml")


def _validation_defaults() -> dict:
    from .config import load

    return load()["validation"]


def _cmd_validate(args) -> None:
    from .config import section_options
    from .validation import Thresholds, validate_sensor

    validate_sensor(args.image, args.truth, args.out, Thresholds.from_config(section_options(args.options, "validation")),
                    stars_out=args.stars)


def _cmd_validate_visit(args) -> None:
    from .config import section_options
    from .validation import Thresholds, validate_visit

    options = section_options(args.options, "validation")
    strict = options["strict"] if args.strict is None else args.strict
    images = _listed(args.images, args.images_template, args.sensors, "--images-template")
    truths = _listed(args.truths, args.truths_template, args.sensors, "--truths-template")
    validate_visit(images, truths, args.out_dir, args.out, args.plot, Thresholds.from_config(options),
                   strict=strict, jobs=args.jobs)


def _cmd_mosaic(args) -> None:
    from .camera import load_camera
    from .mosaic import mosaic

    defaults = _validation_defaults()
    images = _listed(args.images, args.images_template, args.sensors, "--images-template")
    mosaic(images, args.out, args.bin or defaults["mosaic_bin"], args.stretch or defaults["stretch"],
           load_camera(args.camera_description))


def _cmd_cutout(args) -> None:
    from .mosaic import cutout

    defaults = _validation_defaults()
    box = tuple(int(v) for v in args.box.split(",")) if args.box else None
    if box is not None and len(box) != 4:
        from .errors import ConfigError

        raise ConfigError("--box", args.box, "needs four integers", "XMIN,XMAX,YMIN,YMAX (1-based, inclusive)")
    cutout(args.image, args.out, args.bin or defaults["cutout_bin"], args.stretch or defaults["stretch"], box)


def _cmd_plot_resources(args) -> None:
    from .validation import plot_resources

    estimates, benchmarks = list(args.estimates or []), list(args.benchmarks or [])
    if args.plan:  # the plan's visits: their estimates tables and the render records found for them
        import glob
        import os

        from .campaign import bundle_members, exposure_key

        keys = [exposure_key(v, s) for v, s in sorted({(v, s) for members in bundle_members(args.plan).values()
                                                        for v, s, _ in members})]
        if args.estimates_dir:
            estimates += [os.path.join(args.estimates_dir, f"{key}.tsv") for key in keys]
        if args.benchmarks_dir:
            for key in keys:
                benchmarks += sorted(glob.glob(os.path.join(glob.escape(args.benchmarks_dir), key, "*.tsv")))
    plot_resources(args.campaign, estimates, benchmarks, args.out)


def _cmd_make_catalog(args) -> None:
    from .synthetic import make_catalog

    kwargs = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "verbose") and v is not None}
    if "bright_star" in kwargs:
        kwargs["bright_stars"] = [tuple(map(float, s.split(","))) for s in kwargs.pop("bright_star")]
    print(make_catalog(**kwargs))


def _cmd_focal_plane(args) -> None:
    from .camera import focal_plane_csv, load_camera

    text = focal_plane_csv(load_camera(args.camera_description))
    if args.out:
        from .io import atomic_output

        with atomic_output(args.out) as tmp, open(tmp, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def _cmd_record(args) -> None:
    from .registry import bundle_from_plan, make_record, write_record

    bundle = args.bundle or (bundle_from_plan(args.plan, args.image) if args.plan else None)
    write_record(args.out, make_record(args.image, args.outdir, bundle, args.benchmark, args.validation))


def _cmd_register(args) -> None:
    from .registry import merge_rows, register_rows, write_visit_summary

    records = _listed(args.records, args.records_template, args.sensors, "--records-template")
    validations = _listed(args.validations, args.validations_template, args.sensors, "--validations-template")
    benchmarks = _listed(args.benchmarks, args.benchmarks_template, args.sensors, "--benchmarks-template")
    rows = register_rows(merge_rows(records, validations, benchmarks), args.db)
    if args.summary:
        write_visit_summary(args.summary, rows)
    log.info("%d records registered in %s", len(rows), args.db)


def _cmd_status(args) -> None:
    import json
    import time

    from .status import campaign_status, format_status

    while True:
        status = campaign_status(args.outdir, args.workdir)
        if args.json:
            print(json.dumps(status, indent=1))
        else:
            print(format_status(status), flush=True)
        t = status["totals"]
        if not args.watch or t["done"] + t["failed"] >= t["expected"]:
            return
        time.sleep(args.watch)
        print()


def _cmd_query(args) -> None:
    from .registry import format_table, query

    name, value = next((n, v) for n, v in (("failed_validation", args.failed_validation),
                                           ("config_hash", args.config_hash),
                                           ("core_hours_by_band", args.core_hours_by_band),
                                           ("problems", args.problems)) if v)
    columns, rows = query(args.db, name, value if isinstance(value, str) else None)
    print(format_table(columns, rows))


def _cmd_viewer(args) -> None:
    from .config import load
    from .registry import default_url
    from .viewer import serve

    reg = load()["registry"]
    serve(args.outdir, args.db or reg["url"] or default_url(args.outdir), reg["problem_categories"],
          reg["max_comment_chars"], args.host or reg["viewer_host"], args.port or reg["viewer_port"],
          allow_remote=args.allow_remote)


def _cmd_campaign_plan(args) -> None:
    from .sharding import plan_campaign

    campaign, added = plan_campaign(args.catalogs, args.shard_size, args.outdir, args.dir, args.configfile)
    n_visits = sum(len(s.visits) for s in campaign.shards)
    new = f"added {added[0].name}" + (f" to {added[-1].name}" if len(added) > 1 else "") if added else "nothing new"
    print(f"{len(campaign.shards)} shards, {n_visits} visits ({new}); plan {args.dir}/campaign.json")


def _cmd_campaign_run(args) -> int:
    from .sharding import run_campaign

    return run_campaign(args.dir, args.profile, args.parallel, args.dry_run, args.snakemake_args)


def _cmd_campaign_status(args) -> None:
    import json

    from .sharding import campaign_status, format_status, status_json

    campaign, statuses = campaign_status(args.dir)
    print(json.dumps(status_json(campaign, statuses), indent=1) if args.json else format_status(campaign, statuses))


def _config_defaults() -> dict:
    """The config defaults (config/config.yaml, shipped in the package): options that mirror a config
    key default to its value, so the command line and the workflow agree on every default."""
    from .config import DEFAULT_CONFIG, read_yaml

    return read_yaml(DEFAULT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    D = _config_defaults()
    p = argparse.ArgumentParser(prog="dc2flow", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    p.add_argument("--failure-record", metavar="FILE",
                   help="JSON record of a science error: written when the verb fails with one; a rerun "
                        "of the same command on unchanged inputs then refuses at once (exit 3)")
    retry.add_arguments(p)  # --attempt-record: why a retry's last attempt failed (dc2flow.retry)
    p.add_argument("--peak-record", metavar="FILE",
                   help="JSON record of this process's exact peak RSS and CPU time (getrusage), removed "
                        "when the verb starts and written when it succeeds; read beside the benchmark "
                        "TSV X.tsv as X.peak.json, it replaces Snakemake's sampled max_rss")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("parse", help="parse an instance catalog once: header -> JSON, objects -> Parquet",
                       description="Reads a phosim/imSim instance catalog (and its includeobj files) and writes "
                                   "the visit header as JSON, the object table as Parquet and a sources JSON "
                                   "(sha256 of every file read, skip counts).")
    s.add_argument("catalog")
    s.add_argument("--visit-json", required=True, help="output: the visit header (JSON)")
    s.add_argument("--objects", required=True, help="output: the object table (Parquet)")
    s.add_argument("--sources", required=True, help="output: files read with their sha256 (JSON)")
    s.add_argument("--chunk-rows", type=int, default=D["catalog"]["chunk_rows"],
                   help="rows per Parquet row group [default: catalog.chunk_rows]")
    s.set_defaults(func=_cmd_parse)

    s = sub.add_parser("opsim-visit", help="one snap of an OpSim visit and its skyCatalogs objects: the outputs of 'parse'",
                       description="Reads the visit's row of an OpSim database (table observations) as imSim does "
                                   "(dc2flow.opsim) and the objects of a skyCatalogs catalog within --radius-deg of its "
                                   "boresight (dc2flow.skycatalog), and writes the same three files as 'parse': the "
                                   "visit as JSON, the object table as Parquet and a sources JSON (sha256 of every "
                                   "file read, counts), each atomically.")
    s.add_argument("opsim_db", help="the OpSim database (SQLite)")
    s.add_argument("--visit", type=int, required=True, help="the observationId")
    s.add_argument("--snap", type=int, default=0, help="the snap, 0 .. numExposures-1 [default: 0]")
    s.add_argument("--sky-catalog", help="a skyCatalogs YAML [default: none: no objects]")
    s.add_argument("--sky-catalog-root", help="replaces the YAML's skycatalog_root [default: the YAML's, "
                                              "relative to the YAML's folder]")
    s.add_argument("--radius-deg", type=float, default=D["sky_catalog_radius_deg"],
                   help="objects within this angle of the boresight [default: sky_catalog_radius_deg]")
    s.add_argument("--visit-json", required=True, help="output: the visit (JSON)")
    s.add_argument("--objects", required=True, help="output: the object table (Parquet)")
    s.add_argument("--sources", required=True, help="output: files read with their sha256 (JSON)")
    s.set_defaults(func=_cmd_opsim_visit)

    s = sub.add_parser("partition", help="assign a visit's objects to sensors (one Parquet per sensor)",
                       description="Computes fluxes and stamp sizes and writes {out-dir}/{det_name}.parquet for "
                                   "each sensor named, holding the objects whose stamps touch it.")
    s.add_argument("visit_json")
    s.add_argument("objects", help="the visit's object table (Parquet, from 'parse')")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--sensors", required=True, help="comma-separated det_names, e.g. R22_S10,R22_S11")
    s.add_argument("--options", help=OPTIONS_HELP)
    s.add_argument("--index", help="also write an index (TSV: det_name, n_objects, bytes, file) after every "
                                   "partition is in place")
    s.add_argument("--wcs", help="where to write the sensors' ray-traced TAN-SIP WCS cards (JSON) "
                                 "[default: OUT_DIR/wcs.json]")
    s.set_defaults(func=_cmd_partition)

    s = sub.add_parser("render", help="render one sensor to a FITS eimage and a truth table",
                       description="Draws the sensor's partition with GalSim and writes an eimage (float32 "
                                   "electrons, TAN-SIP WCS, provenance, CHECKSUM) and a tab-separated truth table.")
    s.add_argument("visit_json")
    s.add_argument("partition", help="the sensor's partition (Parquet, from 'partition')")
    s.add_argument("--det-name", required=True)
    s.add_argument("--sources", help="the visit's sources JSON (from 'parse'), for provenance")
    s.add_argument("--out", required=True, help="output FITS")
    s.add_argument("--truth", required=True, help="output truth table (.txt.gz)")
    s.add_argument("--options", help=OPTIONS_HELP)
    s.add_argument("--wcs", help="the visit's sensor WCS cards (JSON, from 'partition') "
                                 "[default: wcs.json beside the partition]")
    s.add_argument("--record", help="also write the image's registry record (JSON, as 'record' does; its run "
                                    "time and validation are added by 'register')")
    s.add_argument("--record-root", help="with --record: the output root the stored path is relative to")
    s.add_argument("--bundle", help="with --record: the bundle that renders the image (from the plan, as the "
                                    "workflow passes it)")
    s.add_argument("--plan", help="with --record, instead of --bundle: the bundle plan (CSV) to look the bundle up in")
    s.add_argument("--shard", default="", help="with --bundle or --plan: the campaign shard the plan is of; the "
                                               "recorded bundle is then SHARD/BUNDLE")
    s.add_argument("--screens", help="with scene.psf_model atmospheric: the visit's screens.json (from 'screens'), "
                                     "whose arrays are memory-mapped [default: the screens are built in this process]")
    s.set_defaults(func=_cmd_render)

    s = sub.add_parser("screens", help="build a visit's atmospheric phase screens once (scene.psf_model atmospheric)",
                       description="Builds the visit's six GalSim phase screens as 'render' would (same seed and "
                                   "scene.atmosphere settings) and writes them as plain .npy arrays beside OUT "
                                   "(screens.npy: layers x (npix+1)^2 float64; screens_axes.npy: their x and y), "
                                   "then OUT, a JSON of the seed, settings, r0, L0, layers and each array's "
                                   "shape and sha256; 'render --screens OUT' memory-maps them read-only.")
    s.add_argument("visit_json")
    s.add_argument("--out", required=True, help="output: screens.json (the arrays are written beside it)")
    s.add_argument("--options", help=OPTIONS_HELP)
    s.set_defaults(func=_cmd_screens)

    s = sub.add_parser("estimate", help="predict each sensor's render memory and wall time (one visit)",
                       description="Reads the visit's partitions and writes a tab-separated table with columns "
                                   "visit, det_name, mem_gb, runtime_s and the model's features.")
    s.add_argument("visit_json")
    s.add_argument("--partition-dir", required=True, help="folder of {det_name}.parquet (from 'partition')")
    s.add_argument("--sensors", required=True, help="comma-separated det_names")
    s.add_argument("--out", required=True, help="output table (.tsv)")
    s.add_argument("--model", help="resource model JSON (from 'calibrate'); the packaged one if omitted")
    s.add_argument("--job-overhead-gb", type=float, required=True,
                   help="memory of the scheduler's processes in each job, added to mem_gb (GB)")
    s.add_argument("--min-mem-gb", type=float, required=True,
                   help="smallest prediction per sensor before the overhead (GB)")
    s.add_argument("--options", help=OPTIONS_HELP)
    s.set_defaults(func=_cmd_estimate)

    s = sub.add_parser("calibrate", help="fit the resource model to measured render jobs",
                       description="Joins Snakemake benchmark records of render jobs "
                                   "(benchmarks/render/{visit}/{band}-{det_name}-det{num}.tsv) with the "
                                   "estimates tables, fits the model (erring high) and reports predicted vs "
                                   "measured on training and held-out jobs.")
    s.add_argument("--estimates", nargs="+", required=True, help="estimates tables or folders of them")
    s.add_argument("--benchmarks", nargs="+", required=True, help="render benchmark records or folders")
    s.add_argument("--out", required=True, help="output model JSON")
    s.add_argument("--plot", help="write a predicted-vs-measured PNG here")
    s.add_argument("--holdout", type=float, default=0.25, help="fraction of jobs held out for the report")
    s.add_argument("--quantile", type=float, default=0.95, help="share of training jobs the model must cover")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("bundle", help="pack sensor jobs into node-sized bundles (integer program)",
                       description="Reads jobs (CSV or TSV with columns visit,det_name,mem_gb and optionally "
                                   "runtime_s; estimates tables read as they are), packs them into bundles "
                                   "(one node each) minimising the number of nodes, and writes the plan as CSV "
                                   "with columns bundle,visit,snap,det_name,mem_mb,runtime_min,bundle_mem_mb (each "
                                   "render job's requests; mem_mb carries the visit overhead on the first sensor "
                                   "of each exposure (visit, snap) in a bundle). A summary goes to stdout.")
    s.add_argument("jobs", nargs="*", help="IN.csv (or several, e.g. every estimates/{visit}.tsv)")
    s.add_argument("--estimates-dir", help="instead of listing them: the estimates/ folder, with --visits")
    s.add_argument("--visits", default="", help="comma-separated exposure keys, 00449053 for snap 0 and 00449053-1 "
                   "for snap 1, or visit numbers (snap 0) (with --estimates-dir)")
    s.add_argument("--node-memory-gb", type=float, default=D["bundle"]["node_memory_gb"],
                   help="memory of one node (GB) [default: bundle.node_memory_gb]")
    s.add_argument("--node-cores", type=int, default=D["bundle"]["node_cores"],
                   help="cores of one node: most sensors per bundle [default: bundle.node_cores]")
    s.add_argument("--visit-overhead-gb", type=float, default=D["bundle"]["visit_overhead_gb"],
                   help="per-visit memory in a bundle (GB) [default: bundle.visit_overhead_gb]")
    s.add_argument("--time-limit-s", type=float, default=D["bundle"]["time_limit_s"],
                   help="longest sensor allowed (s) [default: bundle.time_limit_s]")
    s.add_argument("--solver", choices=("auto", "highs", "cbc"), default=D["bundle"]["solver"],
                   help="[default: bundle.solver]")
    s.add_argument("--solve-time-limit-s", type=float, default=D["bundle"]["solve_time_limit_s"],
                   help="time budget of the solve (s) [default: bundle.solve_time_limit_s]")
    s.add_argument("--out", required=True, help="output plan CSV (bundle,visit,snap,det_name,mem_mb,runtime_min,bundle_mem_mb)")
    s.add_argument("--summary", help="also write the summary as JSON here")
    s.set_defaults(func=_cmd_bundle)

    s = sub.add_parser("forecast", help="predict a campaign's node-hours, Slurm jobs, wall time and disk on a site",
                       description="Parses, partitions and estimates a sample of the visits in-process (or reuses "
                                   "their estimates tables), packs their sensor jobs with the bundler for the site's "
                                   "node shape and scales the figures to every visit; prints them beside DC2's flat "
                                   "rule (2 GB a sensor + 10 GB a visit, one visit per bundle). node-hours: a bundle "
                                   "holds a node for its slowest member plus forecast.job_startup_s; a per-visit job "
                                   "(parse_catalog, partition_visit, estimate_visit, validate_visit, mosaic_visit) "
                                   "its CPUs' share of a node. Wall time at N nodes: max(node-hours / N, critical "
                                   "path). --json prints the same figures as JSON (disk in GB).")
    s.add_argument("catalogs", nargs="*", help="instance catalogs, paths or globs (default: catalogs of --configfile)")
    s.add_argument("--profile", help="a Snakemake profile folder: node shape from its configfiles (section bundle), "
                                     "forecast parameters (section forecast), cpus_per_task [default: config defaults]")
    s.add_argument("--configfile", help="a campaign config (catalogs, sensors, physics options, estimate.model)")
    s.add_argument("--sensors", help="'all' or comma-separated det_names [default: the config's sensors]")
    s.add_argument("--sample", type=int, default=10, help="visits estimated in full, evenly spaced by number")
    s.add_argument("--nodes", type=int, action="append", help="node count for the wall time (repeatable) "
                                                               "[default: 1, 10, 100, 1000]")
    s.add_argument("--model", help="resource model JSON (from 'calibrate') [default: estimate.model, else packaged]")
    s.add_argument("--estimates-dir", help="reuse {visit:08d}.tsv estimates tables found here (and the run's "
                                           "benchmarks/, partitions/, catalog/ beside it) instead of computing")
    s.add_argument("--node-memory-gb", type=float, help="override bundle.node_memory_gb")
    s.add_argument("--node-cores", type=int, help="override bundle.node_cores")
    s.add_argument("--visit-overhead-gb", type=float, help="override bundle.visit_overhead_gb")
    s.add_argument("--time-limit-s", type=float, help="override bundle.time_limit_s")
    s.add_argument("--job-startup-s", type=float, help="override forecast.job_startup_s")
    s.add_argument("--workdir", help="keep the sample's stage files here [default: a temporary folder]")
    s.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    s.set_defaults(func=_cmd_forecast)

    s = sub.add_parser("manifest", help="record a bundle's images (path, bytes, DATASUM) in a TSV",
                       description="Written by each bundle's join job once all of its renders are done.")
    s.add_argument("images", nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_manifest)

    s = sub.add_parser("validate", help="check one rendered sensor against its truth table (JSON record)",
                       description="Detects sources (sep), matches the truth table's stars placed by the image's "
                                   "own WCS, and measures astrometric and photometric residuals, the PSF FWHM "
                                   "(adaptive moments) and the sky against the model in the header. Writes a JSON "
                                   "record (keys visit, det_name, band, status ok|flagged, flags, skipped, n_truth, "
                                   "n_detected, n_matched, n_bright, astrometry_median_px/_arcsec, photometry_slope, "
                                   "photometry_median_dmag, psf_fwhm_arcsec, psf_fwhm_model_arcsec, sky_e_per_px, "
                                   "sky_model_e_per_px, thresholds). A flagged sensor is a WARNING, not an error.")
    s.add_argument("image", help="the eimage (FITS, from 'render')")
    s.add_argument("truth", help="its truth table (centroid_...txt.gz, from 'render')")
    s.add_argument("--out", required=True, help="output record (JSON)")
    s.add_argument("--stars", help="also write the matched stars (TSV: id, x_true, y_true, x, y, dx_px, dy_px, "
                                   "mag_true, dmag, fwhm_arcsec, bright)")
    s.add_argument("--options", help=VALIDATION_HELP)
    s.set_defaults(func=_cmd_validate)

    s = sub.add_parser("validate-visit", help="validate every sensor of a visit, then tabulate and plot them",
                       description="Validates each eimage against its truth table (as 'validate' does, several "
                                   "side by side with --jobs), writes each sensor's record {det_name}.json and "
                                   "matched stars {det_name}.tsv in --out-dir, then a TSV with one row per sensor "
                                   "and a PNG: residuals against magnitude, PSF FWHM and sky vs model per sensor. "
                                   "With --strict a flagged sensor is an error.")
    s.add_argument("images", nargs="*", help="the visit's eimages (FITS)")
    s.add_argument("--truths", nargs="+", help="their truth tables, in the same order")
    s.add_argument("--sensors", help="comma-separated det_names, with the --*-template options")
    s.add_argument("--images-template", help=TEMPLATE_HELP)
    s.add_argument("--truths-template", help=TEMPLATE_HELP)
    s.add_argument("--out-dir", required=True, help="folder of the per-sensor records")
    s.add_argument("--out", required=True, help="output table (TSV)")
    s.add_argument("--plot", help="output figure (PNG)")
    s.add_argument("--jobs", type=int, default=D["validation"]["threads"],
                   help="sensors validated side by side (processes) [default: validation.threads]")
    s.add_argument("--options", help=VALIDATION_HELP)
    s.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="fail when a sensor is flagged (default: validation.strict of --options)")
    s.set_defaults(func=_cmd_validate_visit)

    s = sub.add_parser("mosaic", help="draw a visit's sensors on the focal plane (PNG)",
                       description="Bins each eimage, places it at its sensor's focal-plane position in the run's "
                                   "camera (--camera-description), applies one stretch to all and draws raft and "
                                   "sensor outlines and names. Size: the focal plane's extent / (0.01 mm x BIN) "
                                   "(LSSTCam: 3960 x 3954 at BIN 16).")
    s.add_argument("images", nargs="*", help="eimages of one visit (FITS)")
    s.add_argument("--sensors", help="comma-separated det_names, with --images-template")
    s.add_argument("--images-template", help=TEMPLATE_HELP)
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--bin", type=int, help="binning factor (default: validation.mosaic_bin)")
    s.add_argument("--stretch", help="zscale, linear or asinh (default: validation.stretch)")
    s.add_argument("--camera-description", default=D["camera"]["description"], metavar="DIR",
                   help="the camera the images were rendered with: " + CAMERA_HELP)
    s.set_defaults(func=_cmd_mosaic)

    s = sub.add_parser("cutout", help="a PNG of one sensor (or a box of it), binned and stretched",
                       description="Writes a grey PNG, north-up as DS9 shows FITS (row 1 at the bottom).")
    s.add_argument("image", help="an eimage (FITS)")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--bin", type=int, help="binning factor (default: validation.cutout_bin)")
    s.add_argument("--stretch", help="zscale, linear or asinh (default: validation.stretch)")
    s.add_argument("--box", help="XMIN,XMAX,YMIN,YMAX: 1-based inclusive pixels (default: the whole image)")
    s.set_defaults(func=_cmd_cutout)

    s = sub.add_parser("plot-resources", help="plot the bundle plan and measured vs estimated render resources",
                       description="Joins render benchmark records (Snakemake benchmark: TSVs with s and max_rss) "
                                   "with the estimates tables and prints the bundle summary beside them (PNG).")
    s.add_argument("--campaign", required=True, help="the bundle summary (bundles/campaign.json)")
    s.add_argument("--estimates", nargs="*", help="estimates tables (estimates/{visit}.tsv)")
    s.add_argument("--benchmarks", nargs="*", help="render benchmark records; missing files are skipped")
    s.add_argument("--plan", help="the bundle plan: with the two folders below, the files of its visits")
    s.add_argument("--estimates-dir", help="the estimates/ folder (with --plan)")
    s.add_argument("--benchmarks-dir", help="the benchmarks/render/ folder (with --plan)")
    s.add_argument("--out", required=True, help="output PNG")
    s.set_defaults(func=_cmd_plot_resources)

    s = sub.add_parser("make-catalog", help="write a synthetic DC2-format instance catalog",
                       description="Writes phosim_cat_{visit}.txt and its includeobj .gz sub-catalogs.")
    s.add_argument("--outdir", required=True)
    s.add_argument("--visit", type=int, required=True)
    s.add_argument("--ra-deg", type=float, required=True)
    s.add_argument("--dec-deg", type=float, required=True)
    s.add_argument("--band", required=True)
    s.add_argument("--seed", type=int, required=True)
    for name, typ in (("mjd", float), ("rotskypos-deg", float), ("altitude-deg", float),
                      ("seeing-arcsec", float), ("exptime-s", float), ("radius-deg", float),
                      ("star-density", float), ("galaxy-density", float), ("star-mag-min", float)):
        s.add_argument(f"--{name}", type=typ, help="see dc2flow.synthetic.make_catalog")
    s.add_argument("--bright-star", action="append", metavar="RA,DEC,MAGNORM",
                   help="add a marker star (repeatable)")
    s.set_defaults(func=_cmd_make_catalog)

    s = sub.add_parser("focal-plane", help="print the science-sensor table of LSSTCam or a camera description (CSV)")
    s.add_argument("--out", help="write to this file instead of stdout")
    s.add_argument("--camera-description", default=D["camera"]["description"], metavar="DIR", help=CAMERA_HELP)
    s.set_defaults(func=_cmd_focal_plane)

    s = sub.add_parser("record", help="write one rendered image's registry record (JSON)",
                       description="Reads the eimage's header (provenance, DATASUM/CHECKSUM), its sha256, the render "
                                   "job's Snakemake benchmark TSV (columns s, max_rss, cpu_time; NULL when absent) "
                                   "and optionally its validation JSON, and writes one JSON record: the row "
                                   "'register' puts in the registry's images table.")
    s.add_argument("image", help="the eimage FITS file")
    s.add_argument("--outdir", required=True, help="the campaign output root: the stored path is relative to it")
    s.add_argument("--benchmark", help="the render job's benchmark TSV (read if present)")
    s.add_argument("--validation", help="the sensor's validation JSON (from 'dc2flow validate')")
    s.add_argument("--bundle", help="the bundle that rendered it")
    s.add_argument("--plan", help="or: the bundle plan CSV (from 'bundle') to look the bundle up in")
    s.add_argument("--out", required=True, help="output record JSON")
    s.set_defaults(func=_cmd_record)

    s = sub.add_parser("register", help="merge record JSONs into the registry database (one transaction)",
                       description="Upserts every record into the images table keyed on (visit, snap, det_name): "
                                   "rerunning adds no duplicates. Run it on one host only (see README).")
    s.add_argument("records", nargs="*", help="record JSONs from 'dc2flow record'")
    s.add_argument("--sensors", help="comma-separated det_names, with the --*-template options")
    s.add_argument("--records-template", help=TEMPLATE_HELP)
    s.add_argument("--validations-template", help=TEMPLATE_HELP)
    s.add_argument("--benchmarks-template", help=TEMPLATE_HELP)
    s.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///results/registry.sqlite")
    s.add_argument("--summary", help="also write the registered rows as TSV here (the rule's target)")
    s.add_argument("--validations", nargs="+", help="validation JSONs, one per record in the same order: "
                                                    "fill the records' validation columns")
    s.add_argument("--benchmarks", nargs="+", help="render benchmark TSVs, one per record in the same order: "
                                                   "fill run time and peak memory (missing files: NULL)")
    s.set_defaults(func=_cmd_register)

    s = sub.add_parser("status", help="campaign progress: per visit done/failed/running/missing sensors, hours",
                       description="Reads the output root's files: expected sensors from bundles/campaign.csv "
                                   "(else partitions/). done = image present; failed = failure record "
                                   "failures/render/{visit}_{band}_{det_name}_{det_num}.json, or a render log with "
                                   "no incomplete marker and no newer benchmark (error, or killed: memory, scancel, "
                                   "lost node); running = Snakemake's incomplete marker in WORKDIR/.snakemake/"
                                   "incomplete/ (a driver killed mid-job leaves markers: running until Snakemake "
                                   "next runs there); missing = the rest. A visit whose catalog, partition or "
                                   "estimate job failed gets a row 'failed before rendering: <stage>' and counts as "
                                   "failed sensors. Job- and node-hours from benchmark records.")
    s.add_argument("outdir")
    s.add_argument("--workdir", nargs="+", default=["."],
                   help="the directories Snakemake runs in (its -d), for its incomplete markers; a sharded "
                        "campaign: its shards/shard-* folders [default: the current directory]")
    s.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    s.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS until all are done or failed")
    s.set_defaults(func=_cmd_status)

    s = sub.add_parser("campaign", help="a campaign of thousands of visits as shards, one Snakemake run each",
                       description="Plans a campaign as shards of SHARD_SIZE visits (each an ordinary Snakemake run "
                                   "with its own bundle plan, all writing into one output root), runs the shards "
                                   "not yet done through a Snakemake profile, and reports their state. Files in "
                                   "DIR: campaign.json (settings; per shard its visits and catalogs), "
                                   "shards/shard-NNNN.yaml (config overlay: catalogs, outdir, shard), "
                                   "shards/shard-NNNN/ (Snakemake's working directory), logs/shard-NNNN.log, "
                                   "state/shard-NNNN.{done,failed,running}.json.")
    csub = s.add_subparsers(dest="campaign_verb", required=True)
    c = csub.add_parser("plan", help="split catalogs into shards (headers only); again: append new visits",
                        description="Sorts the visits by number and cuts them into shards. Planning again with the "
                                    "same settings keeps every planned shard and appends new shards for new "
                                    "visits; other settings are refused once a shard has run.")
    c.add_argument("catalogs", nargs="+", help="instance catalogs: paths or glob patterns")
    c.add_argument("--shard-size", type=int, required=True, help="visits per shard (e.g. 50-100)")
    c.add_argument("--outdir", required=True, help="the output root shared by every shard")
    c.add_argument("--dir", required=True, help="the campaign directory (plan, shard configs, logs, state)")
    c.add_argument("--configfile", help="base Snakemake config for every shard (absolute paths; no catalogs, "
                                        "outdir or shard)")
    c.set_defaults(func=_cmd_campaign_plan)
    c = csub.add_parser("run", help="run the shards not yet done through a Snakemake profile; again: resume",
                        description="Runs 'snakemake --profile PROFILE --configfile [the profile\'s configfiles] "
                                    "[base] DIR/shards/NAME.yaml --directory DIR/shards/NAME [SNAKEMAKE_ARGS]' for "
                                    "each shard not done, PARALLEL at a time, from the current directory; output "
                                    "to DIR/logs/NAME.log. Exit 0 gives a done marker; a failed shard is run again "
                                    "next time (Snakemake redoes only what is missing). Ctrl-C/SIGTERM are passed "
                                    "on to Snakemake and leave no done marker. Exit status 1 when a shard failed.")
    c.add_argument("--dir", required=True, help="the campaign directory")
    c.add_argument("--profile", required=True, help="Snakemake profile, e.g. profiles/local or profiles/slurm")
    c.add_argument("--parallel", type=int, default=1, help="shards (Snakemake processes) side by side [default: 1]")
    c.add_argument("--dry-run", action="store_true", help="print the Snakemake command of each shard to run")
    c.add_argument("snakemake_args", nargs="*", metavar="-- SNAKEMAKE_ARGS",
                   help="more Snakemake arguments for every shard, after '--' (e.g. -- --unlock)")
    c.set_defaults(func=_cmd_campaign_run)
    c = csub.add_parser("status", help="per shard: planned, running, done or failed",
                        description="Reads DIR's markers: done = last run exited 0 with the current config; "
                                    "failed = last run failed or was interrupted; running = its Snakemake process "
                                    "is alive; planned = not run (or done before its config changed).")
    c.add_argument("--dir", required=True, help="the campaign directory")
    c.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    c.set_defaults(func=_cmd_campaign_status)

    s = sub.add_parser("query", help="ask the registry: failed validation, config hash, core-hours, problems",
                       description="Prints a table. The SQL behind each question is in the README.")
    s.add_argument("--db", required=True, help="SQLAlchemy URL of the registry")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--failed-validation", action="store_true", help="images whose validation status is flagged")
    q.add_argument("--config-hash", metavar="HASH", help="images made with this CFGHASH")
    q.add_argument("--core-hours-by-band", action="store_true", help="render core-hours per band")
    q.add_argument("--problems", action="store_true", help="problems reported in the viewer")
    s.set_defaults(func=_cmd_query)

    s = sub.add_parser("viewer", help="serve the eyeball viewer (web page) over a campaign's images",
                       description="One sensor image at a time as PNG (zscale/linear/asinh), truth overlay, Skip "
                                   "and Submit-problem (stored in the registry's problems table), /problems lists "
                                   "them. Serves only files under OUTDIR; binds 127.0.0.1 unless told otherwise.")
    s.add_argument("outdir")
    s.add_argument("--db", help="registry URL [default: registry.url, else sqlite:///OUTDIR/registry.sqlite]")
    s.add_argument("--host", help="address to listen on [default: registry.viewer_host]")
    s.add_argument("--port", type=int, help="port [default: registry.viewer_port]")
    s.add_argument("--allow-remote", action="store_true",
                   help="listen on a non-loopback --host (anyone who can reach it sees the images, the page's "
                        "token and can post problems); without it only loopback addresses are accepted")
    s.set_defaults(func=_cmd_viewer)
    return p


def main(argv: list[str] | None = None) -> int:
    from . import failures

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.captureWarnings(True)
    record = args.failure_record
    if record:
        from . import __version__

        fingerprint = failures.fingerprint(argv, record, __version__)
        prior = failures.recorded(record, fingerprint)
        if prior:
            print(failures.not_retried_message(args.verb, record, prior), file=sys.stderr)
            return EXIT_NOT_RETRIED
    retry.begin(args)
    if args.peak_record:
        io.remove_peak_record(args.peak_record)
    try:
        status = args.func(args) or 0  # a verb may return an exit status (campaign run)
    except Dc2flowError as exc:
        print(f"dc2flow {args.verb}: error: {exc}", file=sys.stderr)
        if record:
            failures.record_failure(record, args.verb, exc, fingerprint)
        return EXIT_ERROR
    if record:
        failures.clear(record)
    retry.succeeded(args)
    if args.peak_record:
        io.write_peak_record(args.peak_record)
    return status


if __name__ == "__main__":
    sys.exit(main())
