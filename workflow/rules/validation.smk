# Stage 6: check each rendered sensor against its truth table (in its bundle's group job), then
# per visit a table, a figure and a focal-plane mosaic; for the campaign, resources vs estimates.
# Pictures and figures go into `snakemake --report` (captions in workflow/report/).


localrules:
    summarize_visit,  # reads a few JSON records: not worth a Slurm job
    plot_resources,  # reads small tables: not worth a Slurm job
    cutout_sensor,  # on request, one image: seconds


rule validate_sensor:
    input:
        unpack(sensor_outputs),
    output:
        record=f"{OUT}/validation/{{visit}}/{{det_name}}.json",
        stars=f"{OUT}/validation/{{visit}}/{{det_name}}.tsv",
    log:
        f"{OUT}/logs/validation/{{visit}}/{{det_name}}.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{{visit}}/{{det_name}}.tsv"
    group:
        bundle_of_render  # runs in the bundle's Slurm job, after its render, before finish_bundle
    resources:
        # its render's request (at least estimate.min_mem_gb + the overhead; ~0.3 GB is needed),
        # growing with attempts: a bundle's job is as wide as its widest layer, so this never
        # raises its request, and a validation rerun alone (its render finished) gets enough
        mem_mb=render_mem_mb,
        runtime=1,
    params:
        options=VALIDATION_OPTIONS,
    shell:
        "dc2flow -v validate {input.image:q} {input.truth:q} --out {output.record:q} --stars {output.stars:q}"
        " --options {params.options:q} > {log:q} 2>&1"


rule summarize_visit:
    input:
        visit_validations,
    output:
        table=f"{OUT}/validation/{{visit}}/summary.tsv",
        plot=report(
            f"{OUT}/validation/{{visit}}/summary.png",
            caption="../report/validation_summary.rst",
            category="Validation",
            subcategory="{visit}",
            labels={"visit": "{visit}", "figure": "residuals, PSF and sky"},
        ),
    log:
        f"{OUT}/logs/validation/{{visit}}/summary.log",
    benchmark:
        f"{OUT}/benchmarks/validation/{{visit}}/summary.tsv"
    params:
        strict="--strict" if config["validation"]["strict"] else "--no-strict",
    shell:
        "dc2flow -v validate-visit {input:q} --out {output.table:q} --plot {output.plot:q} {params.strict}"
        " > {log:q} 2>&1"


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
        bin=config["validation"]["mosaic_bin"],
        stretch=config["validation"]["stretch"],
    resources:
        mem_mb=2048,
        runtime=10,
    shell:
        "dc2flow -v mosaic {input:q} --out {output:q} --bin {params.bin} --stretch {params.stretch}"
        " > {log:q} 2>&1"


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
        estimates=[f"{OUT}/estimates/{campaign.visit_dir(v)}.tsv" for v in VISITS],
        images=all_images(),  # the renders are done, so their benchmark records exist
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
        benchmarks=render_benchmarks(),
    shell:
        "dc2flow -v plot-resources --campaign {input.campaign:q} --estimates {input.estimates:q}"
        " --benchmarks {params.benchmarks:q} --out {output:q} > {log:q} 2>&1"
