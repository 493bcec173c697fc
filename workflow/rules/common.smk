# Shared helpers: config validation, the visit list, wildcard constraints, input functions.
# All logic lives in the dc2flow package; this file only connects it to Snakemake.
import math
import os
import shlex


from dc2flow import campaign, registry, retry, smk
from dc2flow.atmpsf import AtmosphereSettings
from dc2flow.camera import get_sensor
from dc2flow.config import options_json, physics_options, selected_sensors, validate

validate(config)

OUT = config["outdir"].rstrip("/")
VISITS = campaign.config_visits(config)  # visit -> VisitEntry (catalog headers, OpSim rows)
SNAP = campaign.run_snap(config)  # the snap in every image name (one per run, see dc2flow.campaign)
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
    visit=r"\d{8}",
    band=r"[ugrizy]",
    det_name=r"R\d\d_S\d\d",
    det_num=r"\d{3}",


def visit_entry(wildcards):
    return VISITS[int(wildcards.visit)]


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


def image_path(visit, det_name):
    entry = VISITS[visit]
    return f"{OUT}/{campaign.visit_dir(visit)}/{campaign.image_name(visit, entry.band, det_name, entry.snap)}"


def render_benchmark(visit, det_name):
    """The render job's benchmark record (the path of render_sensor's benchmark:)."""
    return f"{OUT}/benchmarks/render/{campaign.visit_dir(visit)}/{VISITS[visit].band}-{det_name}-det{get_sensor(det_name).det_num:03d}.tsv"


def all_images():
    return [image_path(v, d) for v in VISITS for d in SENSORS]


def sensor_outputs(wildcards):
    """The image and truth table of one (visit, det_name) (cutout_sensor's inputs)."""
    visit, det_name = int(wildcards.visit), wildcards.det_name
    truth = campaign.truth_name(visit, VISITS[visit].band, det_name, VISITS[visit].snap)
    return {"image": image_path(visit, det_name), "truth": f"{OUT}/{campaign.visit_dir(visit)}/{truth}"}


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
    """The plan's rows by (visit, det_name); raises IncompleteCheckpointException before the plan exists.

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


def _request(wildcards):
    if not os.path.exists(PLAN):
        return None  # dry run before the plan exists: the fallback below
    try:
        return _requests()[(int(wildcards.visit), wildcards.det_name)]
    except IncompleteCheckpointException:
        return None  # the plan is there but its checkpoint is to run again


@signature_once
def bundle_of_render(wildcards):
    """The render's bundle: its group (raises IncompleteCheckpointException before the plan exists).

    Not also a params value: params are a rerun trigger, and a new plan (more visits) renames
    bundles, which must not remake finished images; the render looks its bundle up in the plan
    (``--plan``, an ``ancient`` input) for its record instead."""
    return _requests()[(int(wildcards.visit), wildcards.det_name)].bundle


def bundle_of_join(wildcards):
    return wildcards.bundle


ATTEMPT_RECORD = f"{OUT}/failures/attempts/render/{{visit}}_{{det_name}}.json"
"""Where a render records its attempt (dc2flow.retry): read by its retry, removed on success.  A
pattern for params (Snakemake fills it: no function per job while it plans)."""


def attempt_record(wildcards):
    return ATTEMPT_RECORD.format(visit=wildcards.visit, det_name=wildcards.det_name)


GROUP_TAIL_MIN = 1  # finish_bundle asks 1 minute after the renders


def _render_request(wildcards, attempt):
    """(mem_mb, runtime_min) of a render: the plan's on attempt 1; on a retry grown only for the
    cause of the last attempt's failure (memory after a memory kill, time after a time-limit
    kill), memory capped at this member's share of the node (a bundle's requests add up)."""
    req = _request(wildcards)
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
    return _render_request(wildcards, attempt)[0]


@signature_once
def render_runtime_min(wildcards, attempt):
    """Minutes; Snakemake adds a group's layers up, so the bundle's request stays within the time limit."""
    return _render_request(wildcards, attempt)[1]


def plan_members():
    """bundle -> [(visit, det_name), ...] of the checkpoint's plan."""
    return campaign.bundle_members(checkpoints.bundle_campaign.get().output.plan)


def bundle_images(wildcards):
    return [image_path(visit, det_name) for visit, det_name in plan_members()[wildcards.bundle]]


def all_bundles(wildcards):
    return [f"{BUNDLES}done/{bundle}.tsv" for bundle in plan_members()]


# --- validation: one job per visit checks its sensors; per visit a table, figure and mosaic -----
def visit_images(wildcards):
    return [image_path(int(wildcards.visit), d) for d in SENSORS]


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


# Per-sensor paths of one visit as templates ({det_name}, {det_num} filled by dc2flow for each
# sensor of --sensors): params functions, so that Snakemake leaves the braces alone. A command
# line that listed every path would grow with the campaign past Linux's 128 KiB per argument.
def visit_image_template(wildcards):
    visit = int(wildcards.visit)
    return f"{OUT}/{wildcards.visit}/eimage_{wildcards.visit}-{VISITS[visit].snap}-{VISITS[visit].band}-{{det_name}}-det{{det_num}}.fits"


def visit_truth_template(wildcards):
    visit = int(wildcards.visit)
    return f"{OUT}/{wildcards.visit}/centroid_{wildcards.visit}-{VISITS[visit].snap}-{VISITS[visit].band}-{{det_name}}-det{{det_num}}.txt.gz"


def visit_validation_template(wildcards):
    return f"{OUT}/validation/{wildcards.visit}/{{det_name}}.json"


def visit_record_template(wildcards):
    band = VISITS[int(wildcards.visit)].band
    return f"{OUT}/registry/records/{wildcards.visit}/{band}-{{det_name}}-det{{det_num}}.json"


def visit_benchmark_template(wildcards):
    band = VISITS[int(wildcards.visit)].band
    return f"{OUT}/benchmarks/render/{wildcards.visit}/{band}-{{det_name}}-det{{det_num}}.tsv"


def estimates_dir(wildcards):
    """The estimates folder as a params function (a literal prefix of the outputs upsets --lint)."""
    return f"{OUT}/estimates"


def render_benchmarks_dir(wildcards):
    return f"{OUT}/benchmarks/render"


def all_validation():
    """Per visit the validation table, figure and mosaic, and the campaign's resource figure."""
    per_visit = [f"{OUT}/validation/{campaign.visit_dir(v)}/{name}" for v in VISITS
                 for name in ("summary.tsv", "summary.png", "mosaic.png")]
    return per_visit + ([f"{OUT}/validation/{SHARD}resources.png"] if VISITS else [])


# --- registry: the render jobs' records, merged per visit on the driver host --------------------
REGISTRY_URL = config["registry"]["url"] or registry.default_url(OUT)


def partition_dir(wildcards):
    """The visit's partition folder (beside its index), as a params function (see output_root)."""
    return f"{OUT}/partitions/{wildcards.visit}"


@signature_once
def output_root(wildcards):
    """The output root as a params function (a literal prefix of the outputs upsets --lint)."""
    return OUT


def visit_registry_records(wildcards):
    visit = int(wildcards.visit)
    band = VISITS[visit].band
    return [f"{OUT}/registry/records/{wildcards.visit}/{band}-{d}-det{get_sensor(d).det_num:03d}.json" for d in SENSORS]



def all_registered():
    return [f"{OUT}/registry/visits/{campaign.visit_dir(v)}.tsv" for v in VISITS]


def screens_files(wildcards):
    """The visit's screens.json and its arrays, inputs of each render with scene.psf_model atmospheric
    (none otherwise); all three, so that temp() keeps the arrays until the visit's renders are done."""
    folder = f"{OUT}/screens/{wildcards.visit}"
    return [f"{folder}/screens.json", f"{folder}/screens.npy", f"{folder}/screens_axes.npy"] if ATMOSPHERIC else []


def screens_option(wildcards):
    """--screens for the render (the screens it memory-maps), or nothing."""
    return f"--screens {shlex.quote(screens_files(wildcards)[0])}" if ATMOSPHERIC else ""


def screens_mem_mb(wildcards):
    """The build's peak: 0.06 GB + twice the screens (dc2flow.atmpsf.AtmosphereSettings.build_memory_gb)."""
    return math.ceil(AtmosphereSettings.from_scene(config["scene"]).build_memory_gb * 1024)
