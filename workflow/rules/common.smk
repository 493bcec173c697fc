# Shared helpers: config validation, the exposure list, wildcard constraints, input functions.
# All logic lives in the dc2flow package; this file only connects it to Snakemake.
# The {visit} wildcard of the stage files is an exposure key (dc2flow.campaign.exposure_key):
# 00449053 for snap 0, 00449053-1 for snap 1; images stay in {visit:08d}/ with the snap in the name.
import math
import os
import shlex


from dc2flow import campaign, registry, retry, smk
from dc2flow.atmpsf import AtmosphereSettings
from dc2flow.camera import get_sensor
from dc2flow.config import options_json, physics_options, selected_sensors, validate

validate(config)

OUT = config["outdir"].rstrip("/")
VISITS = campaign.config_visits(config)  # Exposure (visit, snap) -> VisitEntry (catalog headers, OpSim rows)
BY_KEY = {e.key: entry for e, entry in VISITS.items()}  # the {visit} wildcard (an exposure key) -> VisitEntry
SNAPS = campaign.run_snaps(config)  # the snaps of each OpSim visit (one render rule each, render.smk)
INSTCAT_VISIT = campaign.visit_regex(VISITS, "instcat")  # which visits parse_catalog makes, and opsim_visit
OPSIM_VISIT = campaign.visit_regex(VISITS, "opsim")
SENSORS = selected_sensors(config)
OPTIONS = options_json(physics_options(config))  # what changes pixels; rerun when it changes
PARTITION_OPTIONS = options_json({k: config[k] for k in ("camera", "scene", "partition")})  # what partitions depend on
# the run's camera for verbs that place sensors but take no physics options (mosaic): a params value,
# so that changing camera.description reruns them (partition, estimate and render get it in their options)
CAMERA_OPTION = (f"--camera-description {shlex.quote(config['camera']['description'])}"
                 if config["camera"]["description"] else "")
SCENE_OPTIONS = options_json({"scene": config["scene"]})  # what the atmospheric screens depend on
ATMOSPHERIC = config["scene"]["psf_model"] == "atmospheric"  # then a build_screens job per visit
VALIDATION = config["validation"]
# what the per-sensor checks depend on (pictures, strictness and threads change no record; strict
# and threads still rerun validate_visit, one job per visit, never a render)
NOT_CHECKS = ("strict", "mosaic_bin", "cutout_bin", "stretch", "threads")
VALIDATION_OPTIONS = options_json({k: v for k, v in VALIDATION.items() if k not in NOT_CHECKS})


wildcard_constraints:
    visit=campaign.EXPOSURE_KEY_REGEX,  # 00449053 and 00449053-1 are distinct keys
    band=r"[ugrizy]",
    det_name=r"R\d\d_S\d\d",
    det_num=r"\d{3}",


def visit_entry(wildcards):
    return BY_KEY[wildcards.visit]


def get_catalog(wildcards):
    return visit_entry(wildcards).catalog


def opsim_inputs(wildcards):
    """An OpSim visit's inputs: the database and, where given, the sky catalog YAML (its Parquet files
    are found when the job runs; their sha256 go in sources.json)."""
    inputs = {"db": config["opsim_db"]}
    if config["sky_catalog"]:
        inputs["sky"] = config["sky_catalog"]
    return inputs


def sky_catalog_options(wildcards):
    if not config["sky_catalog"]:
        return ""
    root = f" --sky-catalog-root {shlex.quote(config['sky_catalog_root'])}" if config["sky_catalog_root"] else ""
    return (f"--sky-catalog {shlex.quote(config['sky_catalog'])}{root}"
            f" --radius-deg {config['sky_catalog_radius_deg']}")


def image_path(entry, det_name):
    """The image of one sensor of an exposure (its VisitEntry): in the visit's folder, the snap in its name."""
    return f"{OUT}/{campaign.visit_dir(entry.visit)}/{campaign.image_name(entry.visit, entry.band, det_name, entry.snap)}"


def all_images():
    return [image_path(e, d) for e in VISITS.values() for d in SENSORS]


def sensor_outputs(wildcards):
    """The image and truth table of one (exposure, det_name) (cutout_sensor's inputs)."""
    entry, det_name = BY_KEY[wildcards.visit], wildcards.det_name
    truth = campaign.truth_name(entry.visit, entry.band, det_name, entry.snap)
    return {"image": image_path(entry, det_name), "truth": f"{OUT}/{campaign.visit_dir(entry.visit)}/{truth}"}


def failure_record(stage, *wildcard_names):
    """A params pattern: where a job of ``stage`` records a science error (dc2flow --failure-record).

    The record outlives the failed attempt (it is not an output, so Snakemake keeps it), and a retry
    on unchanged inputs stops at once instead of failing again after the same work.  A pattern, not
    a function: Snakemake fills the wildcards, and no function runs per job while it plans.
    """
    return f"{OUT}/failures/{stage}/" + "_".join("{%s}" % name for name in wildcard_names) + ".json"


def model_input():
    """The calibrated model file, an input so that editing it re-estimates (none: the packaged one)."""
    return [config["estimate"]["model"]] if config["estimate"]["model"] else []


def model_option():
    model = config["estimate"]["model"]
    return f"--model {shlex.quote(model)}" if model else ""


# --- bundles: the checkpoint's plan decides groups and resources -------------------------------
# A shard of a sharded campaign (dc2flow campaign) keeps its campaign-wide files apart under the
# shared outdir: bundles/{shard}/..., logs/bundle/{shard}/..., validation/{shard}/resources.png.
SHARD = f"{config['shard']}/" if config["shard"] else ""
BUNDLES = f"{OUT}/bundles/{SHARD}"  # the plan, its summary and the bundles' done markers
PLAN = f"{BUNDLES}campaign.csv"
BUNDLE = config["bundle"]


def node_options():
    return (f"--node-memory-gb {BUNDLE['node_memory_gb']} --node-cores {BUNDLE['node_cores']}"
            f" --visit-overhead-gb {BUNDLE['visit_overhead_gb']} --time-limit-s {BUNDLE['time_limit_s']}"
            f" --solver {BUNDLE['solver']} --solve-time-limit-s {BUNDLE['solve_time_limit_s']}")


# Snakemake internals come through dc2flow.smk (one adapter, tested against the pinned version):
# signature_once gives Snakemake a per-job function's signature once (planning speed).
signature_once = smk.signature_once
IncompleteCheckpointException = smk.incomplete_checkpoint_type()


def _requests():
    """The plan's rows by (visit, snap, det_name); raises IncompleteCheckpointException before the plan exists.

    The plan is the complete record of each render's request (bundle, mem_mb, runtime_min,
    bundle_mem_mb): one read per plan file (campaign.plan_lookup caches it on path and mtime)."""
    if not os.path.exists(PLAN):  # surely incomplete: say so without Snakemake's lookup (runs per job)
        raise _incomplete_plan()
    return campaign.render_requests(checkpoints.bundle_campaign.get().output.plan)


_INCOMPLETE = []


def _incomplete_plan():
    """One exception object for "the plan is not made yet", raised by every render while Snakemake plans
    (made once: building it flags the path, ~35 us, and renders ask several times each)."""
    if not _INCOMPLETE:
        _INCOMPLETE.append(smk.incomplete_checkpoint(checkpoints.bundle_campaign, PLAN))
    return _INCOMPLETE[0].with_traceback(None)


GROUP_TAIL_MIN = 1  # finish_bundle asks 1 minute after the renders


class RenderFunctions:
    """The per-job functions of one snap's render (render.smk defines one render per snap, as
    its image name holds the snap, its stage files the exposure key; ``{visit}`` is the 8-digit
    visit there).  Each is a plain function of (wildcards[, attempt]) for Snakemake."""

    def __init__(self, snap):
        self.snap = snap
        self.key = f"{{visit}}{campaign.exposure_key(0, snap)[8:]}"  # the exposure key as a pattern: {visit}, {visit}-1
        # where the render records its attempt (dc2flow.retry): read by its retry, removed on success;
        # a pattern for params (Snakemake fills it: no function per job while it plans)
        self.attempt_pattern = f"{OUT}/failures/attempts/render/{self.key}_{{det_name}}.json"

        def request(wildcards):
            if not os.path.exists(PLAN):
                return None  # dry run before the plan exists: the fallback below
            try:
                return _requests()[(int(wildcards.visit), snap, wildcards.det_name)]
            except IncompleteCheckpointException:
                return None  # the plan is there but its checkpoint is to run again

        @signature_once
        def bundle_of_render(wildcards):
            """The render's bundle: its group (raises IncompleteCheckpointException before the plan exists).

            Not also a params value: params are a rerun trigger, and a new plan (more visits) renames
            bundles, which must not remake finished images; the render looks its bundle up in the plan
            (``--plan``, an ``ancient`` input) for its record instead."""
            return _requests()[(int(wildcards.visit), snap, wildcards.det_name)].bundle

        def attempt_record(wildcards):
            return self.attempt_pattern.format(visit=wildcards.visit, det_name=wildcards.det_name)

        def render_request(wildcards, attempt):
            """(mem_mb, runtime_min) of a render: the plan's on attempt 1; on a retry grown only for the
            cause of the last attempt's failure (memory after a memory kill, time after a time-limit
            kill), memory capped at this member's share of the node (a bundle's requests add up)."""
            req = request(wildcards)
            mem = int(req.mem_mb if req else BUNDLE["fallback_mem_gb"] * 1024)
            runtime_cap = max(1, BUNDLE["time_limit_s"] / 60 - GROUP_TAIL_MIN)
            minutes = int(max(1, min(math.ceil(req.runtime_min if req else BUNDLE["fallback_runtime_min"]), runtime_cap)))
            if attempt <= 1:
                return mem, minutes
            bundle_mem = req.bundle_mem_mb if req else 0
            mem_cap = mem * BUNDLE["node_memory_gb"] * 1024 / bundle_mem if bundle_mem > 0 else math.inf
            last, why = retry.last_attempt(attempt_record(wildcards))
            return retry.next_request(mem, minutes, last, why, BUNDLE["retry_memory_growth"], mem_cap, runtime_cap)

        @signature_once
        def render_mem_mb(wildcards, attempt):
            return render_request(wildcards, attempt)[0]

        @signature_once
        def render_runtime_min(wildcards, attempt):
            """Minutes; Snakemake adds a group's layers up, so the bundle's request stays within the time limit."""
            return render_request(wildcards, attempt)[1]

        self.bundle_of_render, self.attempt_record = bundle_of_render, attempt_record
        self.render_mem_mb, self.render_runtime_min = render_mem_mb, render_runtime_min


def bundle_of_join(wildcards):
    return wildcards.bundle


def plan_members():
    """bundle -> [(visit, snap, det_name), ...] of the checkpoint's plan."""
    return campaign.bundle_members(checkpoints.bundle_campaign.get().output.plan)


def bundle_images(wildcards):
    return [image_path(VISITS[campaign.Exposure(visit, snap)], det_name)
            for visit, snap, det_name in plan_members()[wildcards.bundle]]


def all_bundles(wildcards):
    return [f"{BUNDLES}done/{bundle}.tsv" for bundle in plan_members()]


# --- validation: one job per exposure checks its sensors; per exposure a table, figure and mosaic
def visit_images(wildcards):
    return [image_path(BY_KEY[wildcards.visit], d) for d in SENSORS]


def validate_mem_mb(wildcards, threads):
    """~0.3 GB per sensor validated side by side (a full image, the background map, detections)."""
    return 512 + 384 * threads


def validate_runtime_min(wildcards, threads):
    """~1.5 s per sensor (3 s allowed), ``threads`` at a time, plus start-up."""
    return 5 + math.ceil(len(SENSORS) * 3 / threads / 60)


def validate_cpus(wildcards, threads):
    """Slurm CPUs of validate_visit: its threads after Snakemake capped them at --cores (a request
    above the node's CPUs would pend for ever)."""
    return threads


# Per-sensor paths of one exposure as templates ({det_name}, {det_num} filled by dc2flow for each
# sensor of --sensors): params functions, so that Snakemake leaves the braces alone. A command
# line that listed every path would grow with the campaign past Linux's 128 KiB per argument.
def visit_image_template(wildcards):
    e = BY_KEY[wildcards.visit]
    vd = campaign.visit_dir(e.visit)
    return f"{OUT}/{vd}/eimage_{vd}-{e.snap}-{e.band}-{{det_name}}-det{{det_num}}.fits"


def visit_truth_template(wildcards):
    e = BY_KEY[wildcards.visit]
    vd = campaign.visit_dir(e.visit)
    return f"{OUT}/{vd}/centroid_{vd}-{e.snap}-{e.band}-{{det_name}}-det{{det_num}}.txt.gz"


def visit_validation_template(wildcards):
    return f"{OUT}/validation/{wildcards.visit}/{{det_name}}.json"


def visit_record_template(wildcards):
    band = BY_KEY[wildcards.visit].band
    return f"{OUT}/registry/records/{wildcards.visit}/{band}-{{det_name}}-det{{det_num}}.json"


def visit_benchmark_template(wildcards):
    band = BY_KEY[wildcards.visit].band
    return f"{OUT}/benchmarks/render/{wildcards.visit}/{band}-{{det_name}}-det{{det_num}}.tsv"


def estimates_dir(wildcards):
    """The estimates folder as a params function (a literal prefix of the outputs upsets --lint)."""
    return f"{OUT}/estimates"


def render_benchmarks_dir(wildcards):
    return f"{OUT}/benchmarks/render"


def all_validation():
    """Per exposure the validation table, figure and mosaic, and the campaign's resource figure."""
    per_visit = [f"{OUT}/validation/{e.key}/{name}" for e in VISITS
                 for name in ("summary.tsv", "summary.png", "mosaic.png")]
    return per_visit + ([f"{OUT}/validation/{SHARD}resources.png"] if VISITS else [])


# --- registry: the render jobs' records, merged per exposure on the driver host --------------------
REGISTRY_URL = config["registry"]["url"] or registry.default_url(OUT)


def partition_dir(wildcards):
    """The exposure's partition folder (beside its index), as a params function (see output_root)."""
    return f"{OUT}/partitions/{wildcards.visit}"


@signature_once
def output_root(wildcards):
    """The output root as a params function (a literal prefix of the outputs upsets --lint)."""
    return OUT


def visit_registry_records(wildcards):
    band = BY_KEY[wildcards.visit].band
    return [f"{OUT}/registry/records/{wildcards.visit}/{band}-{d}-det{get_sensor(d).det_num:03d}.json" for d in SENSORS]



def all_registered():
    return [f"{OUT}/registry/visits/{e.key}.tsv" for e in VISITS]


def screens_inputs(key):
    """The exposure's screens.json and its arrays (``key`` the exposure key pattern of a render rule),
    inputs of each render with scene.psf_model atmospheric (none otherwise); all three, so that temp()
    keeps the arrays until the exposure's renders are done."""
    folder = f"{OUT}/screens/{key}"
    return [f"{folder}/screens.json", f"{folder}/screens.npy", f"{folder}/screens_axes.npy"] if ATMOSPHERIC else []


def screens_option(key):
    """--screens for the render (the screens it memory-maps), or nothing: a pattern Snakemake fills."""
    return f"--screens {shlex.quote(f'{OUT}/screens/')}{key}/screens.json" if ATMOSPHERIC else ""


def screens_mem_mb(wildcards):
    """The build's peak: 0.06 GB + twice the screens (dc2flow.atmpsf.AtmosphereSettings.build_memory_gb)."""
    return math.ceil(AtmosphereSettings.from_scene(config["scene"]).build_memory_gb * 1024)
