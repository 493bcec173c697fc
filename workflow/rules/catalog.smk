# Stage 1: parse each instance catalog once (header -> JSON, objects -> Parquet).


rule parse_catalog:
    input:
        get_catalog,
    output:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        objects=f"{OUT}/catalog/{{visit}}/objects.parquet",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
    log:
        f"{OUT}/logs/catalog/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/catalog/{{visit}}.tsv"
    params:
        failure=failure_record("catalog", "visit"),
        chunk_rows=config["catalog"]["chunk_rows"],
    shell:
        "dc2flow -v --failure-record {params.failure:q} parse {input:q} --visit-json {output.visit:q} --objects {output.objects:q}"
        " --sources {output.sources:q} --chunk-rows {params.chunk_rows} > {log:q} 2>&1"
