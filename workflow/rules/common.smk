# Shared helpers: config validation, the visit list, wildcard constraints, input functions.
# All logic lives in the dc2flow package; this file only connects it to Snakemake.
import math
import shlex

from snakemake.exceptions import IncompleteCheckpointException

from dc2flow import campaign, registry
from dc2flow.camera import get_sensor
from dc2flow.config import options_json, physics_options, selected_sensors, validate

validate(config)

OUT = config["outdir"].rstrip("/")
VISITS = campaign.visits(config["catalogs"])  # visit -> VisitEntry (headers only)
SENSORS = selected_sensors(config)
OPTIONS = options_json(physics_options(config))  # what changes pixels; rerun when it changes
PARTITION_OPTIONS = options_json({k: config[k] for k in ("scene", "partition")})  # what partitions depend on


wildcard_constraints:
    visit=r"\d{8}",
    band=r"[ugrizy]",
    det_name=r"R\d\d_S\d\d",
    det_num=r"\d{3}",


def visit_entry(wildcards):
    return VISITS[int(wildcards.visit)]


def get_catalog(wildcards):
    return visit_entry(wildcards).catalog


def image_path(visit, det_name):
    entry = VISITS[visit]
    return f"{OUT}/{campaign.visit_dir(visit)}/{campaign.image_name(visit, entry.band, det_name)}"


def all_images():
    return [image_path(v, d) for v in VISITS for d in SENSORS]


def partition_dir(wildcards):
    return f"{OUT}/partitions/{wildcards.visit}"


def model_input():
    """The calibrated model file, an input so that editing it re-estimates (none: the packaged one)."""
    return [config["estimate"]["model"]] if config["estimate"]["model"] else []


def model_option():
    model = config["estimate"]["model"]
    return f"--model {shlex.quote(model)}" if model else ""


# --- bundles: the checkpoint's plan decides groups and resources -------------------------------
PLAN = f"{OUT}/bundles/campaign.csv"
BUNDLE = config["bundle"]


def node_options():
    return (f"--node-memory-gb {BUNDLE['node_memory_gb']} --node-cores {BUNDLE['node_cores']}"
            f" --visit-overhead-gb {BUNDLE['visit_overhead_gb']} --time-limit-s {BUNDLE['time_limit_s']}"
            f" --solver {BUNDLE['solver']} --solve-time-limit-s {BUNDLE['solve_time_limit_s']}")


def _requests():
    """The plan's per-sensor requests; raises IncompleteCheckpointException before the plan exists."""
    plan = checkpoints.bundle_campaign.get().output.plan
    return campaign.render_requests(plan, f"{OUT}/estimates", BUNDLE["visit_overhead_gb"])


def _request(wildcards):
    try:
        return _requests()[(int(wildcards.visit), wildcards.det_name)]
    except IncompleteCheckpointException:
        return None  # dry run before the plan exists: the fallback below


def bundle_of_render(wildcards):
    return _requests()[(int(wildcards.visit), wildcards.det_name)].bundle


def bundle_of_join(wildcards):
    return wildcards.bundle


def _retry_scale(req, attempt):
    return campaign.retry_scale(attempt, BUNDLE["retry_memory_growth"], req.bundle_mem_mb if req else 0,
                                BUNDLE["node_memory_gb"])


def render_mem_mb(wildcards, attempt):
    req = _request(wildcards)
    return int((req.mem_mb if req else BUNDLE["fallback_mem_gb"] * 1024) * _retry_scale(req, attempt))


def render_runtime_min(wildcards, attempt):
    req = _request(wildcards)
    minutes = (req.runtime_min if req else BUNDLE["fallback_runtime_min"]) * BUNDLE["retry_memory_growth"] ** (attempt - 1)
    return int(min(math.ceil(minutes), BUNDLE["time_limit_s"] / 60))


def bundle_images(wildcards):
    members = campaign.bundle_members(checkpoints.bundle_campaign.get().output.plan)
    return [image_path(visit, det_name) for visit, det_name in members[wildcards.bundle]]


def all_bundles(wildcards):
    members = campaign.bundle_members(checkpoints.bundle_campaign.get().output.plan)
    return [f"{OUT}/bundles/done/{bundle}.tsv" for bundle in members]


# --- registry: per-sensor records, merged per visit on the driver host -------------------------
REGISTRY_URL = config["registry"]["url"] or registry.default_url(OUT)


def output_root(wildcards):
    return OUT


def record_image(wildcards):
    return image_path(int(wildcards.visit), wildcards.det_name)


def record_benchmark(wildcards):
    """The render job's benchmark record (its path mirrors the render rule's benchmark:)."""
    visit = int(wildcards.visit)
    det_num = get_sensor(wildcards.det_name).det_num
    return f"{OUT}/benchmarks/render/{wildcards.visit}/{VISITS[visit].band}-{wildcards.det_name}-det{det_num:03d}.tsv"


def bundle_records(wildcards):
    members = campaign.bundle_members(checkpoints.bundle_campaign.get().output.plan)
    return [f"{OUT}/registry/records/{campaign.visit_dir(v)}/{d}.json" for v, d in members[wildcards.bundle]]


def visit_records(wildcards):
    return [f"{OUT}/registry/records/{wildcards.visit}/{d}.json" for d in SENSORS]


def all_registered():
    return [f"{OUT}/registry/visits/{campaign.visit_dir(v)}.tsv" for v in VISITS]
