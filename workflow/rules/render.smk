# Stage 5: one job per (visit, sensor): GalSim eimage + truth table, in its bundle's group job.
# The same job writes the image's registry record (checksums, provenance, bundle): one job per
# sensor in the DAG keeps Snakemake's planning of a campaign fast (see README, "Campaigns").


rule render_sensor:
    input:
        # the visit's partition index (its {det_name}.parquet is beside it); the header and sources
        # come with it (one parse job writes them with the objects, which partition_visit reads, so
        # a change to them remakes the partitions first): one input per sensor keeps planning fast
        partitions=f"{OUT}/partitions/{{visit}}/index.tsv",
        plan=ancient(PLAN),  # wait for the plan; a new plan does not redo finished images
        screens=screens_files,  # scene.psf_model atmospheric: the visit's screens (atmosphere.smk), mapped
    output:
        image=f"{OUT}/{{visit}}/eimage_{{visit}}-{SNAP}-{{band}}-{{det_name}}-det{{det_num}}.fits",
        truth=f"{OUT}/{{visit}}/centroid_{{visit}}-{SNAP}-{{band}}-{{det_name}}-det{{det_num}}.txt.gz",
        record=f"{OUT}/registry/records/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.json",
    log:
        f"{OUT}/logs/render/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.log",
    benchmark:
        f"{OUT}/benchmarks/render/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.tsv"
    group:
        bundle_of_render
    resources:
        mem_mb=render_mem_mb,
        runtime=render_runtime_min,
    params:
        # the job's exact peak RSS beside its benchmark (X.tsv -> X.peak.json, dc2flow.io.read_benchmark)
        peak=f"{OUT}/benchmarks/render/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.peak.json",
        partition=f"{OUT}/partitions/{{visit}}/{{det_name}}.parquet",
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
        failure=failure_record("render", "visit", "band", "det_name", "det_num"),
        attempt=ATTEMPT_RECORD,  # the retry reads why this attempt failed (dc2flow.retry)
        options=OPTIONS,
        root=output_root,  # stored paths in the record are relative to it
        shard=config["shard"],  # a sharded campaign's bundles are recorded as {shard}/{bundle}
        screens=screens_option,  # --screens {input.screens}, or nothing
    shell:
        "dc2flow -v --failure-record {params.failure:q} --attempt-record {params.attempt:q} --peak-record {params.peak:q}"
        " --attempt-mem-mb {resources.mem_mb} --attempt-runtime-min {resources.runtime} render {params.visit:q} {params.partition:q} --det-name {wildcards.det_name}"
        " --sources {params.sources:q} --out {output.image:q} --truth {output.truth:q}"
        " --record {output.record:q} --record-root {params.root:q} --plan {input.plan:q} --shard={params.shard:q} {params.screens}"
        " --options {params.options:q} > {log:q} 2>&1"
