# Stage 5: one job per (visit, sensor): GalSim eimage + truth table, in its bundle's group job.


rule render_sensor:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
        partition=f"{OUT}/partitions/{{visit}}/{{det_name}}.parquet",
        plan=ancient(PLAN),  # wait for the plan; a new plan does not redo finished images
    output:
        image=f"{OUT}/{{visit}}/eimage_{{visit}}-0-{{band}}-{{det_name}}-det{{det_num}}.fits",
        truth=f"{OUT}/{{visit}}/centroid_{{visit}}-0-{{band}}-{{det_name}}-det{{det_num}}.txt.gz",
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
        failure=failure_record("render"),
        options=OPTIONS,
    shell:
        "dc2flow -v --failure-record {params.failure:q} render {input.visit:q} {input.partition:q} --det-name {wildcards.det_name}"
        " --sources {input.sources:q} --out {output.image:q} --truth {output.truth:q}"
        " --options {params.options:q} > {log:q} 2>&1"
