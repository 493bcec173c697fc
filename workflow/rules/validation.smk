# Stage 6: per exposure ({visit}: its key, see common.smk), check every rendered sensor against its truth table (one job, several sensors
# side by side), then a table, a figure and a focal-plane mosaic; for the campaign, resources vs
# estimates. Pictures and figures go into `snakemake --report` (captions in workflow/report/).
# One validation job per visit, not per sensor: the DAG keeps one job per sensor (its render).


localrules:
    plot_resources,  # reads small tables: not worth a Slurm job
    cutout_sensor,  # on request, one image: seconds


rule validate_visit:
    input:
        visit_images,
    output:
        records=[f"{OUT}/validation/{{visit}}/{det_name}.json" for det_name in SENSORS],
        stars=[f"{OUT}/validation/{{visit}}/{det_name}.tsv" for det_name in SENSORS],
        table=f"{OUT}/validation/{{visit}}/summary.tsv",
        plot=report(
            f"{OUT}/validation/{{visit}}/summary.png",
            caption="../report/validation_summary.rst",
            category="Validation",
            subcategory="{visit}",
            labels={"visit": "{visit}", "figure": "residuals, PSF and sky"},
        ),
    log:
        f"{OUT}/logs/validation/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{{visit}}.tsv"
    threads: VALIDATION["threads"]
    resources:
        mem_mb=validate_mem_mb,
        runtime=validate_runtime_min,
        cpus_per_task=validate_cpus,
    params:
        # the images and truth tables as templates with the sensor list: no command line grows with
        # the campaign (the truths are made by the same render jobs as the images: not inputs)
        images=visit_image_template,
        truths=visit_truth_template,
        sensors=",".join(SENSORS),
        out_dir=f"{OUT}/validation/{{visit}}",
        options=VALIDATION_OPTIONS,
        strict="--strict" if VALIDATION["strict"] else "--no-strict",
    shell:
        "dc2flow -v validate-visit --sensors {params.sensors} --images-template {params.images:q}"
        " --truths-template {params.truths:q} --out-dir {params.out_dir:q}"
        " --out {output.table:q} --plot {output.plot:q} --jobs {threads} --options {params.options:q}"
        " {params.strict} > {log:q} 2>&1"


rule mosaic_visit:
    input:
        visit_images,
    output:
        report(
            f"{OUT}/validation/{{visit}}/mosaic.png",
            caption="../report/mosaic.rst",
            category="Validation",
            subcategory="{visit}",
            labels={"visit": "{visit}", "figure": "focal-plane mosaic"},
        ),
    log:
        f"{OUT}/logs/validation/{{visit}}/mosaic.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{{visit}}/mosaic.tsv"
    params:
        images=visit_image_template,
        sensors=",".join(SENSORS),
        bin=config["validation"]["mosaic_bin"],
        stretch=config["validation"]["stretch"],
        camera=CAMERA_OPTION,  # where the sensors go (camera.description)
    resources:
        mem_mb=2048,
        runtime=10,
    shell:
        "dc2flow -v mosaic --sensors {params.sensors} --images-template {params.images:q} --out {output:q} --bin {params.bin} --stretch {params.stretch}"
        " {params.camera} > {log:q} 2>&1"


rule cutout_sensor:  # on request: snakemake results/validation/{visit}/cutouts/{det_name}.png
    input:
        unpack(sensor_outputs),
    output:
        f"{OUT}/validation/{{visit}}/cutouts/{{det_name}}.png",
    log:
        f"{OUT}/logs/validation/{{visit}}/cutout-{{det_name}}.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{{visit}}/cutout-{{det_name}}.tsv"
    params:
        bin=config["validation"]["cutout_bin"],
        stretch=config["validation"]["stretch"],
    shell:
        "dc2flow -v cutout {input.image:q} --out {output:q} --bin {params.bin} --stretch {params.stretch}"
        " > {log:q} 2>&1"


rule plot_resources:
    input:
        campaign=f"{BUNDLES}campaign.json",
        plan=PLAN,
        estimates=[f"{OUT}/estimates/{e.key}.tsv" for e in VISITS],
        registered=all_registered(),  # the renders (and their benchmark records) are done
    output:
        report(
            f"{OUT}/validation/{SHARD}resources.png",
            caption="../report/resources.rst",
            category="Resources",
            labels={"figure": "bundles and render resources"},
        ),
    log:
        f"{OUT}/logs/validation/{SHARD}resources.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{SHARD}resources.tsv"
    params:
        # folders and the plan, not path lists: no command line grows with the campaign
        estimates=estimates_dir,
        benchmarks=render_benchmarks_dir,  # render records, read when present
    shell:
        "dc2flow -v plot-resources --campaign {input.campaign:q} --plan {input.plan:q}"
        " --estimates-dir {params.estimates:q} --benchmarks-dir {params.benchmarks:q} --out {output:q} > {log:q} 2>&1"
