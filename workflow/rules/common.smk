# Shared helpers: config validation, the visit list, wildcard constraints, input functions.
# All logic lives in the dc2flow package; this file only connects it to Snakemake.
import shlex

from dc2flow import campaign
from dc2flow.config import options_json, physics_options, selected_sensors, validate

validate(config)

OUT = config["outdir"].rstrip("/")
VISITS = campaign.visits(config["catalogs"])  # visit -> VisitEntry (headers only)
SENSORS = selected_sensors(config)
OPTIONS = options_json(physics_options(config))  # what changes pixels; rerun when it changes


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


def model_option():
    model = config["estimate"]["model"]
    return f"--model {shlex.quote(model)}" if model else ""
