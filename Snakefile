# dc2flow: instance catalogs x LSSTCam sensors -> GalSim eimages.
# Stages (one rule file each, data flows one way):
#   catalog -> partition -> estimate -> bundle (checkpoint) -> render (one group job per bundle)
#   (scene.psf_model atmospheric: catalog -> screens, once per visit, which every render maps)
#   -> validation (one job per visit checks its sensors; a table, figure and mosaic per visit)
#   -> registry (each render job writes its record; merged per visit on the driver host)
# Report: snakemake --report report.zip (mosaics, validation figures, bundles and resources)
# Usage: snakemake --cores 2 --config catalogs='[my/instcat.txt]' sensors='[R22_S11]' outdir=out
import os

from snakemake.utils import min_version

min_version("9.0")


# Defaults beside this Snakefile, so the workflow runs from any working directory (-d).
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# The front page of `snakemake --report` (captions of each figure are in workflow/report/).
report: "workflow/report/workflow.rst"


# The runtime image (containers/), when render.container_image names one: every job runs in it
# with --software-deployment-method apptainer, and every FITS header records it (CONTAINR).
container: config["render"]["container_image"] or None


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/partition.smk"
include: "workflow/rules/atmosphere.smk"
include: "workflow/rules/estimate.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/validation.smk"
include: "workflow/rules/registry.smk"


rule all:
    default_target: True
    input:
        all_images(),  # targets themselves: a deleted image is remade (later steps would not ask)
        all_bundles,
        all_validation(),
        all_registered(),
