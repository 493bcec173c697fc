"""Cost forecast: node-hours, Slurm jobs, wall time and disk of a campaign, before it runs.

A campaign of thousands of visits cannot be estimated in full before deciding to run it, but its
cost is a sum over visits.  :func:`forecast` runs the pipeline's own parse, partition and estimate
functions on a few visits (``sample``, evenly spaced among the visits sorted by number), packs
their sensor jobs with the real bundler (:func:`dc2flow.packing.plan_bundles`) for the site's node
shape, and scales the per-visit figures by ``visits / sampled visits``.  The same jobs packed by
DC2's flat rule (2 GB per sensor, 10 GB per visit, one visit per bundle) give the comparison.

Definitions (the same ones ``benchmarks/forecast_vs_slurm.py`` applies to Slurm's accounting):

* **Slurm jobs**: one per bundle, plus :data:`PER_VISIT_SLURM_JOBS` per visit.  Local rules
  (:data:`LOCAL_RULES`) run on the submitting host and are not counted.
* **node-hours**: a bundle holds a whole node (it is planned to fill one) for its predicted wall
  time: its slowest member's ``runtime_s`` (members run side by side, one core each) plus
  ``forecast.job_startup_s``.  A per-visit job holds ``cpus / node_cores`` of a node (one CPU, the
  profiles' ``cpus_per_task``) for its run time plus the same start-up.  So measured node-hours are
  ``sum(Elapsed)`` over bundle jobs plus ``sum(Elapsed x AllocCPUS / node CPUs)`` over the others.
* **per-visit run times**: the resource model predicts render jobs only.  Parse, partition and
  estimate are timed while the sample is computed (a measurement on this machine); with reused
  estimates (``estimates_dir``) the run's benchmark records beside them
  (``benchmarks/{catalog,partition,estimate}/{visit}.tsv``) are read, else
  ``forecast.per_visit_job_s`` is used.  Validation and mosaic jobs take
  ``forecast.validate_s_per_sensor`` and ``forecast.mosaic_s_per_sensor`` per sensor.
* **wall time at N nodes**: ``max(node-hours / N, critical path)``; the critical path is the
  slowest sampled visit's parse + partition + estimate, the longest bundle, then its validation
  and mosaic, each with its start-up.
* **disk**: eimages from the sensor geometry of the run's camera (``camera.description``, else
  LSSTCam's; float32 pixels in 2880-byte FITS blocks plus
  :data:`IMAGE_HEADER_BLOCKS` of header), truth tables at ``forecast.truth_bytes_per_object``
  times the objects of each partition, partitions and parsed catalogs as measured on the sample.

The node shape and the forecast parameters come from a site profile (:func:`read_profile`): its
``config.yaml`` ``configfiles:`` (e.g. ``node.yaml``) merged over ``config/config.yaml``.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import camera
from .packing import (DC2_SENSOR_GB, DC2_VISIT_GB, Job, Node, dc2_flat_bundles, dc2_flat_size, node_for_jobs,
                      plan_bundles)
from .campaign import visits as campaign_visits
from .estimate import read_estimates
from .config import load, merge, physics_options, profile_configfiles, read_yaml, validate
from .errors import ConfigError, Dc2flowWarning, ForecastError
from .io import read_benchmark

PER_VISIT_SLURM_JOBS = ("parse_catalog", "partition_visit", "estimate_visit", "validate_visit", "mosaic_visit")
"""The rules that run as one Slurm job per visit (the rest of the Slurm jobs are the bundles)."""
LOCAL_RULES = ("bundle_campaign", "register_visit", "plot_resources")
"""Rules that run on the submitting host: no Slurm job, not counted."""
_MEASURED_STAGES = {"parse_catalog": "catalog", "partition_visit": "partition", "estimate_visit": "estimate"}
FITS_BLOCK_BYTES = 2880
IMAGE_HEADER_BLOCKS = 3
"""Header blocks of an eimage: up to 72 cards (57 for imSim keywords, WCS and checksums, two per
catalog file); an e2v eimage of a catalog with four includes measures 65,609,280 bytes, exactly this."""
TRUTH_HEADER_BYTES = 100
DEFAULT_NODES = (1, 10, 100, 1000)
DEFAULT_SAMPLE = 10


@dataclass(frozen=True)
class Site:
    """Where the campaign runs: the node shape the bundler packs for and the forecast parameters.

    Parameters:
        node:        the :class:`~dc2flow.packing.Node`.
        forecast:    the config section ``forecast`` (``job_startup_s``, ...).
        cpus_per_job: CPUs of a per-visit job (the profile's ``default-resources: cpus_per_task``).
        source:      where it was read from (a profile folder, or ``config/config.yaml``).
        validate_threads: sensors validate_visit checks side by side (``validation.threads``, at
                     most a node's cores): its wall time is the sensors' time over these.
    """

    node: Node
    forecast: dict
    cpus_per_job: int = 1
    source: str = "config/config.yaml"
    validate_threads: int = 1


def _line_of(path: str, key: str) -> int:
    """1-based line of the first line of ``path`` that starts with ``key``, or 0."""
    try:
        with open(path) as fh:
            for i, line in enumerate(fh, start=1):
                if line.lstrip().startswith(key):
                    return i
    except OSError:
        pass
    return 0


def read_profile(profile_dir: str | os.PathLike, configfile: str | os.PathLike | None = None,
                 overrides: dict | None = None) -> tuple[dict, Site]:
    """The configuration a Snakemake run with ``--profile profile_dir`` sees, and its :class:`Site`.

    The profile's ``config.yaml`` names ``configfiles`` relative to where Snakemake starts; each is
    found as Snakemake would (:func:`dc2flow.config.profile_configfiles`: from the current
    directory, else from the repository root).  They are merged, in order, over
    ``config/config.yaml`` and ``configfile``, then ``overrides``.

    Parameters:
        profile_dir:  the profile folder (holding ``config.yaml``), or None for the defaults.
        configfile:   a campaign config merged first [default: None].
        overrides:    config keys merged last (command-line flags) [default: None].

    Returns:
        (config, site).

    Raises:
        ForecastError: no ``config.yaml`` in the folder, a ``configfiles`` entry that is no file,
                       or a ``cores``/``cpus_per_task`` that is not a positive integer; the message
                       names ``config.yaml:line``.
        ConfigError:   the merged configuration is invalid.
    """
    config = load(configfile)
    cpus, source = 1, "config/config.yaml"
    if profile_dir is not None:
        path = os.path.join(os.fspath(profile_dir), "config.yaml")
        if not os.path.isfile(path):
            raise ForecastError(os.fspath(profile_dir), "not a Snakemake profile: it has no config.yaml",
                                fix="give the profile folder, e.g. profiles/perlmutter")
        profile = read_yaml(path)
        for name, found in profile_configfiles(profile):
            if found is None:
                raise ForecastError(f"{path}:{_line_of(path, '- ' + str(name)) or _line_of(path, 'configfiles')}",
                                    "configfiles entry is not a file", name,
                                    "name a file relative to the repository root, as Snakemake reads it")
            config = merge(config, read_yaml(found))
        cpus = (profile.get("default-resources") or {}).get("cpus_per_task", 1)
        for key, value in (("cores", profile.get("cores")), ("cpus_per_task", cpus)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ForecastError(f"{path}:{_line_of(path, key)}", f"'{key}' is not a positive integer", value,
                                    "give the node's CPU count")
        cores = profile.get("cores")
        if isinstance(cores, int) and cores != config["bundle"]["node_cores"]:
            warnings.warn(f"{path}: cores {cores} differs from bundle.node_cores "
                          f"{config['bundle']['node_cores']}; the forecast packs for bundle.node_cores",
                          Dc2flowWarning, stacklevel=2)
        source = os.fspath(profile_dir)
    if overrides:
        config = merge(config, overrides)
    config = validate(config)
    b = config["bundle"]
    node = Node(memory_gb=float(b["node_memory_gb"]), cores=int(b["node_cores"]),
                visit_overhead_gb=float(b["visit_overhead_gb"]), time_limit_s=float(b["time_limit_s"]))
    threads = max(1, min(int(config["validation"]["threads"]), node.cores))
    return config, Site(node, dict(config["forecast"]), int(cpus), source, threads)


def sample_visits(visits: Sequence[int], k: int) -> list[int]:
    """``k`` visits evenly spaced among ``visits`` sorted by number (all of them when ``k`` >= count).

    Deterministic: the first and the last visit are always in a sample of two or more.

    Raises:
        ConfigError: ``k`` < 1.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError("--sample", k, "must be an integer >= 1", "1, 2, ...")
    ordered = sorted(visits)
    if k >= len(ordered):
        return ordered
    if k == 1:
        return [ordered[(len(ordered) - 1) // 2]]
    picks = sorted({int(round(i * (len(ordered) - 1) / (k - 1))) for i in range(k)})
    return [ordered[i] for i in picks]


@dataclass(frozen=True)
class VisitSample:
    """What one sampled visit costs: its sensor estimates, per-visit job run times and stage files.

    Parameters:
        visit:       the visit.
        rows:        the estimates rows (``visit, sensor, mem_gb, runtime_s`` and features).
        runtime_s:   per-visit rule -> run time in seconds (measured, or a parameter).
        measured:    per-visit rule -> where its run time came from.
        catalog_bytes, partition_bytes: sizes of the parsed catalog and the partitions, or None.
    """

    visit: int
    rows: tuple
    runtime_s: dict
    measured: dict
    catalog_bytes: int | None = None
    partition_bytes: int | None = None


def _dir_bytes(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def compute_sample(catalog: str, sensors: Sequence[str], config: dict, model, workdir: str | os.PathLike) -> VisitSample:
    """Parse, partition and estimate one visit in ``workdir``, timing each step (in-process).

    Raises:
        CatalogError: a malformed catalog (``file:line``), as ``dc2flow parse`` would.
    """
    from .catalog import Visit, read_catalog
    from .estimate import estimate_visit
    from .partition import partition_visit

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.perf_counter()
    visit, _ = read_catalog(catalog, objects_out=work / "objects.parquet", chunk_rows=config["catalog"]["chunk_rows"])
    visit.write_json(work / "visit.json")
    times["parse_catalog"] = time.perf_counter() - t0
    visit = Visit.read_json(work / "visit.json")
    options = physics_options(config)
    parts = {name: str(work / "partitions" / f"{name}.parquet") for name in sensors}
    t0 = time.perf_counter()
    partition_visit(visit, work / "objects.parquet", parts, options)
    times["partition_visit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = estimate_visit(visit, parts, model, options["render"]["fft_flux_threshold"],
                          config["estimate"]["job_overhead_gb"], config["estimate"]["min_mem_gb"], options["scene"],
                          camera.camera_for(options))
    times["estimate_visit"] = time.perf_counter() - t0
    return VisitSample(visit.visit, tuple(rows), times, {k: "timed here" for k in times},
                       catalog_bytes=(work / "objects.parquet").stat().st_size + (work / "visit.json").stat().st_size,
                       partition_bytes=_dir_bytes(work / "partitions"))


def reuse_sample(visit: int, estimates_dir: str | os.PathLike, config: dict) -> VisitSample | None:
    """A visit's sample from a run's files: ``estimates_dir/{visit:08d}.tsv``, and beside that folder
    the run's ``partitions/``, ``catalog/`` and ``benchmarks/`` when present.  None without the table.

    Raises:
        EstimateError: a malformed table (``file:line``).
    """
    path = os.path.join(os.fspath(estimates_dir), f"{visit:08d}.tsv")
    if not os.path.isfile(path):
        return None
    rows = read_estimates(path)
    root = os.path.dirname(os.path.abspath(os.fspath(estimates_dir)))
    times, measured = {}, {}
    for rule, stage in _MEASURED_STAGES.items():
        secs = read_benchmark(os.path.join(root, "benchmarks", stage, f"{visit:08d}.tsv"))["runtime_s"]
        times[rule] = secs if secs is not None else config["forecast"]["per_visit_job_s"]
        measured[rule] = "benchmark record" if secs is not None else "forecast.per_visit_job_s"
    cat, part = os.path.join(root, "catalog", f"{visit:08d}"), os.path.join(root, "partitions", f"{visit:08d}")
    return VisitSample(visit, tuple(rows), times, measured,
                       catalog_bytes=_dir_bytes(cat) if os.path.isdir(cat) else None,
                       partition_bytes=_dir_bytes(part) if os.path.isdir(part) else None)


@dataclass(frozen=True)
class Costs:
    """A campaign's cost under one packing rule (already scaled to the whole campaign).

    Parameters:
        bundles:              bundles (Slurm group jobs rendering sensors).
        per_visit_jobs:       Slurm jobs of the per-visit rules.
        node_hours_bundles:   node-hours of the bundles (a node each, slowest member + start-up).
        node_hours_per_visit: node-hours of the per-visit jobs (their CPU share of a node).
        longest_bundle_h:     the longest bundle's wall time with start-up, hours.
        critical_path_h:      the least wall time whatever the nodes, hours.
    """

    bundles: int
    per_visit_jobs: int
    node_hours_bundles: float
    node_hours_per_visit: float
    longest_bundle_h: float
    critical_path_h: float

    @property
    def slurm_jobs(self) -> int:
        return self.bundles + self.per_visit_jobs

    @property
    def node_hours(self) -> float:
        return self.node_hours_bundles + self.node_hours_per_visit

    def wall_time_h(self, nodes: int) -> float:
        """Wall time on ``nodes`` nodes: max(node-hours / nodes, critical path), hours."""
        return max(self.node_hours / nodes, self.critical_path_h)

    def to_dict(self, nodes: Sequence[int] = ()) -> dict:
        out = asdict(self)
        out.update(slurm_jobs=self.slurm_jobs, node_hours=self.node_hours,
                   wall_time=[{"nodes": n, "hours": self.wall_time_h(n), "days": self.wall_time_h(n) / 24.0}
                              for n in nodes])
        return out


def flat_bundles(jobs: Sequence[Job], node: Node) -> list[list[Job]] | None:
    """DC2's flat rule as bundles: per visit, sensors in detector order, ``k`` to a bundle.

    ``k`` is :func:`dc2flow.packing.dc2_flat_size`, so the count equals
    :func:`dc2flow.packing.dc2_flat_bundles`.  None when not one sensor fits a node.
    """
    k = dc2_flat_size(node)
    if k is None:
        return None
    by_visit: dict[int, list[Job]] = {}
    for job in jobs:
        by_visit.setdefault(job.visit, []).append(job)
    out = []
    for visit in sorted(by_visit):
        members = sorted(by_visit[visit], key=lambda j: camera.get_sensor(j.det_name).det_num)
        out += [members[i:i + k] for i in range(0, len(members), k)]
    return out


def per_visit_runtimes(sample: VisitSample, n_sensors: int, params: dict) -> dict[str, float]:
    """Run time in seconds of each per-visit Slurm job of a sampled visit (without start-up)."""
    out = dict(sample.runtime_s)
    out["validate_visit"] = params["validate_s_per_sensor"] * n_sensors
    out["mosaic_visit"] = params["mosaic_s_per_sensor"] * n_sensors
    return {rule: float(out[rule]) for rule in PER_VISIT_SLURM_JOBS}


def costs(bundle_runtimes_s: Sequence[float], samples: Sequence[VisitSample], n_sensors: int, site: Site,
          scale: float) -> Costs:
    """:class:`Costs` from the sample's bundles (their predicted wall times) and per-visit jobs.

    Parameters:
        bundle_runtimes_s:  each sampled bundle's slowest member, seconds (without start-up).
        samples:            the sampled visits.
        n_sensors:          sensors per visit.
        site:               the node shape and forecast parameters.
        scale:              campaign visits / sampled visits.
    """
    startup = site.forecast["job_startup_s"]
    share = site.cpus_per_job / site.node.cores
    runtimes = [per_visit_runtimes(s, n_sensors, site.forecast) for s in samples]
    per_visit_s = sum((t + startup) * share for r in runtimes for t in r.values())
    longest = max(bundle_runtimes_s, default=0.0) + startup
    before = max((sum(r[k] for k in ("parse_catalog", "partition_visit", "estimate_visit")) + 3 * startup
                  for r in runtimes), default=0.0)
    after = max((r["validate_visit"] / site.validate_threads + r["mosaic_visit"] + 2 * startup for r in runtimes),
                default=0.0)
    return Costs(bundles=int(math.ceil(len(bundle_runtimes_s) * scale - 1e-9)),
                 per_visit_jobs=int(round(len(samples) * scale)) * len(PER_VISIT_SLURM_JOBS),
                 node_hours_bundles=sum(t + startup for t in bundle_runtimes_s) * scale / 3600.0,
                 node_hours_per_visit=per_visit_s * scale / 3600.0,
                 longest_bundle_h=longest / 3600.0, critical_path_h=(before + longest + after) / 3600.0)


def image_bytes(det_name: str, cam: camera.Camera | None = None) -> int:
    """Bytes of one eimage FITS file: float32 pixels and header, in 2880-byte blocks; the sensor's
    size is its size in ``cam`` (the run's camera) [default: None, LSSTCam]."""
    sensor = (cam or camera.LSSTCAM).sensor(det_name)
    data = sensor.nx * sensor.ny * 4
    return FITS_BLOCK_BYTES * (IMAGE_HEADER_BLOCKS + int(math.ceil(data / FITS_BLOCK_BYTES)))


def disk_bytes(samples: Sequence[VisitSample], params: dict, scale: float,
               cam: camera.Camera | None = None) -> dict[str, float | None]:
    """Disk volume in bytes, scaled to the campaign: images, truth tables, partitions, catalogs, total.

    Images are sized by ``cam``, the run's camera [default: None, LSSTCam].  Partitions and catalogs
    are None when a sampled visit's files were not measured.
    """
    images = sum(image_bytes(r["det_name"], cam) for s in samples for r in s.rows)
    truth = sum(TRUTH_HEADER_BYTES + params["truth_bytes_per_object"] * r["n_objects"] * 1e3
                for s in samples for r in s.rows)
    parts = [s.partition_bytes for s in samples]
    cats = [s.catalog_bytes for s in samples]
    out = {"images": images * scale, "truth_tables": truth * scale,
           "partitions": sum(parts) * scale if None not in parts else None,
           "catalogs": sum(cats) * scale if None not in cats else None}
    out["total"] = sum(v for v in out.values() if v is not None)   # of the known parts
    return out


@dataclass(frozen=True)
class Forecast:
    """The forecast of a campaign (:func:`forecast`); :meth:`to_dict` is what ``--json`` prints."""

    visits: int
    sampled: tuple
    sensors_per_visit: int
    site: Site
    model: str
    dc2flow: Costs
    flat: Costs | None
    disk_bytes: dict
    per_visit_runtime_s: dict
    runtime_source: dict
    plan_method: str
    nodes: tuple = DEFAULT_NODES
    notes: tuple = field(default_factory=tuple)

    @property
    def scale(self) -> float:
        return self.visits / len(self.sampled) if self.sampled else 0.0

    def to_dict(self) -> dict:
        node = self.site.node
        return {
            "campaign": {"visits": self.visits, "sampled_visits": list(self.sampled), "scale": self.scale,
                         "sensors_per_visit": self.sensors_per_visit,
                         "sensor_jobs": self.visits * self.sensors_per_visit},
            "site": {"source": self.site.source, "node_memory_gb": node.memory_gb, "node_cores": node.cores,
                     "visit_overhead_gb": node.visit_overhead_gb, "time_limit_s": node.time_limit_s,
                     "cpus_per_job": self.site.cpus_per_job, **self.site.forecast},
            "model": self.model, "plan_method": self.plan_method,
            "per_visit_slurm_jobs": list(PER_VISIT_SLURM_JOBS),
            "per_visit_runtime_s": self.per_visit_runtime_s, "per_visit_runtime_source": self.runtime_source,
            "dc2flow": self.dc2flow.to_dict(self.nodes),
            "dc2_flat": self.flat.to_dict(self.nodes) if self.flat else None,
            "disk_gb": {k: (v / 1e9 if v is not None else None) for k, v in self.disk_bytes.items()},
            "notes": list(self.notes),
        }


def forecast(catalog_patterns: Sequence[str], sensors: Sequence[str], config: dict, site: Site, *,
             sample: int = DEFAULT_SAMPLE, model_path: str | None = None,
             estimates_dir: str | os.PathLike | None = None, nodes: Sequence[int] = DEFAULT_NODES,
             workdir: str | os.PathLike | None = None) -> Forecast:
    """Forecast the cost of rendering ``sensors`` of every catalog on ``site`` (see the module doc).

    Parameters:
        catalog_patterns: catalog paths or globs (one catalog per visit; headers are read for all).
        sensors:          det_names rendered per visit.
        config:           the configuration (physics options, estimate and bundle sections).
        site:             node shape and forecast parameters (:func:`read_profile`).
        sample:           visits to estimate in full [default: DEFAULT_SAMPLE].
        model_path:       the resource model [default: None, ``estimate.model`` or the packaged one].
        estimates_dir:    reuse ``{visit:08d}.tsv`` tables found here instead of computing them
                          [default: None].
        nodes:            node counts to give the wall time for [default: DEFAULT_NODES].
        workdir:          where the sample's stage files go [default: None, a temporary folder,
                          removed afterwards].

    Raises:
        ConfigError:    no catalogs, bad sample or node counts, a bad model file.
        CatalogError:   a malformed catalog header or sampled catalog.
        ForecastError:  a malformed reused estimates table.
        BundlingError:  a sensor does not fit a node (the campaign cannot run on this site).
    """
    from .estimate import ResourceModel

    if not catalog_patterns:
        raise ConfigError("catalogs", list(catalog_patterns), "no catalogs given", "paths or glob patterns")
    for n in nodes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("--nodes", n, "must be an integer >= 1", "1, 2, ...")
    entries = campaign_visits(list(catalog_patterns))
    picked = sample_visits(list(entries), sample)
    model_file = model_path or config["estimate"]["model"]
    model = ResourceModel.read(model_file)
    samples = []
    with tempfile.TemporaryDirectory(prefix="dc2flow-forecast-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for visit in picked:
            reused = reuse_sample(visit, estimates_dir, config) if estimates_dir else None
            samples.append(reused or compute_sample(entries[visit].catalog, sensors, config, model,
                                                    root / f"{visit:08d}"))
    notes = []
    for s in samples:
        got = {r["det_name"] for r in s.rows}
        if got != set(sensors):
            notes.append(f"visit {s.visit}: {len(got)} sensors in its estimates, {len(sensors)} asked for")
    jobs = [Job(r["visit"], r["det_name"], r["mem_gb"], r["runtime_s"]) for s in samples for r in s.rows]
    b = config["bundle"]
    # the node as dc2flow bundle sees it: a visit's shared memory (atmospheric screens) on its overhead
    node = node_for_jobs(site.node, {(r["visit"], r.get("snap", 0)): float(r.get("visit_shared_gb", 0.0))
                                    for s in samples for r in s.rows})
    plan, summary = plan_bundles(jobs, node, solver=b["solver"], time_limit_s=b["solve_time_limit_s"])
    scale = len(entries) / len(samples)
    n_sensors = len(sensors)
    ours = costs([plan.bundle_runtime_s(i) for i in range(plan.n_bundles)], samples, n_sensors, site, scale)
    flat_groups = flat_bundles(jobs, site.node)
    flat = None
    if flat_groups is not None:
        assert len(flat_groups) == dc2_flat_bundles(jobs, site.node)
        flat = costs([max(j.runtime_s for j in g) for g in flat_groups], samples, n_sensors, site, scale)
    else:
        notes.append(f"DC2's flat rule ({DC2_SENSOR_GB:g} GB a sensor + {DC2_VISIT_GB:g} GB a visit) "
                     f"does not fit a {site.node.memory_gb:g} GB node")
    mean_rt = {rule: float(np.mean([per_visit_runtimes(s, n_sensors, site.forecast)[rule] for s in samples]))
               for rule in PER_VISIT_SLURM_JOBS}
    source = {rule: sorted({s.measured[rule] for s in samples}) for rule in _MEASURED_STAGES}
    source.update(validate_visit="forecast.validate_s_per_sensor", mosaic_visit="forecast.mosaic_s_per_sensor")
    return Forecast(visits=len(entries), sampled=tuple(picked), sensors_per_visit=n_sensors, site=site,
                    model=str(model_file or "packaged"), dc2flow=ours, flat=flat,
                    disk_bytes=disk_bytes(samples, site.forecast, scale, camera.camera_for(config)),
                    per_visit_runtime_s=mean_rt,
                    runtime_source=source, plan_method=summary.method, nodes=tuple(nodes), notes=tuple(notes))


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_forecast(f: Forecast) -> str:
    """The forecast as a table (what ``dc2flow forecast`` prints)."""
    d = f.to_dict()
    node = f.site.node
    shown = ", ".join(map(str, f.sampled[:6])) + (", ..." if len(f.sampled) > 6 else "")
    lines = [
        f"campaign:  {f.visits} visits x {f.sensors_per_visit} sensors = {f.visits * f.sensors_per_visit} sensor jobs; "
        f"sampled {len(f.sampled)} ({shown}), figures x{f.scale:.3g}",
        f"site:      {f.site.source}: nodes of {node.memory_gb:g} GB and {node.cores} cores, visit overhead "
        f"{node.visit_overhead_gb:g} GB, time limit {node.time_limit_s:g} s; job start-up "
        f"{f.site.forecast['job_startup_s']:g} s",
        f"model:     {f.model} (packed by {f.plan_method})",
        "",
        f"{'':34s}{'dc2flow':>20s}{'DC2 flat rule':>20s}",
    ]
    ours, flat = d["dc2flow"], d["dc2_flat"] or {}

    def row(label, key, fmt):
        lines.append(f"{label:34s}{_num(ours.get(key), fmt):>20s}{_num(flat.get(key), fmt):>20s}")

    row("bundles (render Slurm jobs)", "bundles", "d")
    row("per-visit Slurm jobs", "per_visit_jobs", "d")
    row("Slurm jobs", "slurm_jobs", "d")
    row("node-hours", "node_hours", ".4g")
    row("  bundles", "node_hours_bundles", ".4g")
    row("  per-visit jobs", "node_hours_per_visit", ".4g")
    row("longest bundle (h)", "longest_bundle_h", ".3g")
    for k, w in enumerate(ours["wall_time"]):
        fw = flat["wall_time"][k] if flat else None
        label = f"wall time at {w['nodes']} node{'s' if w['nodes'] > 1 else ''} (h, d)"
        both = f"{w['hours']:.3g} h {w['days']:.2g} d"
        other = f"{fw['hours']:.3g} h {fw['days']:.2g} d" if fw else "-"
        lines.append(f"{label:34s}{both:>20s}{other:>20s}")
    disk = d["disk_gb"]
    lines += ["", "disk (GB):  " + ", ".join(f"{k.replace('_', ' ')} {_num(v, '.4g')}" for k, v in disk.items())]
    rt = ", ".join(f"{rule} {f.per_visit_runtime_s[rule]:.3g} s" for rule in PER_VISIT_SLURM_JOBS)
    lines.append(f"per-visit jobs (mean run time): {rt}")
    src = "; ".join(f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in f.runtime_source.items())
    lines.append(f"  from: {src}")
    lines += [f"note: {n}" for n in f.notes]
    return "\n".join(lines)
