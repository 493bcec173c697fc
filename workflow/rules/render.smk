# Stage 3: one job per (visit, sensor): GalSim eimage + truth table.


rule render_sensor:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
        partition=f"{OUT}/partitions/{{visit}}/{{det_name}}.parquet",
    output:
        image=f"{OUT}/{{visit}}/eimage_{{visit}}-0-{{band}}-{{det_name}}-det{{det_num}}.fits",
        truth=f"{OUT}/{{visit}}/centroid_{{visit}}-0-{{band}}-{{det_name}}-det{{det_num}}.txt.gz",
    log:
        f"{OUT}/logs/render/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.log",
    benchmark:
        f"{OUT}/benchmarks/render/{{visit}}/{{band}}-{{det_name}}-det{{det_num}}.tsv"
    params:
        options=OPTIONS,
    shell:
        "dc2flow -v render {input.visit:q} {input.partition:q} --det-name {wildcards.det_name}"
        " --sources {input.sources:q} --out {output.image:q} --truth {output.truth:q}"
        " --options {params.options:q} > {log:q} 2>&1"
