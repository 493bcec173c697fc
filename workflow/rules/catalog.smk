# Stage 1: each exposure's header and objects, once: an instance catalog parsed (parse_catalog), or
# one snap of an OpSim visit with its skyCatalogs objects (opsim_visit, the snap from the exposure
# key: catalog/00449053-1/ is snap 1); both write the same three files, and each exposure is made
# by one of them (wildcard constraints from dc2flow.campaign.visit_regex).


rule parse_catalog:
    input:
        get_catalog,
    output:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        objects=f"{OUT}/catalog/{{visit}}/objects.parquet",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
    wildcard_constraints:
        visit=INSTCAT_VISIT,
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


rule opsim_visit:
    input:
        unpack(opsim_inputs),
    output:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        objects=f"{OUT}/catalog/{{visit}}/objects.parquet",
        sources=f"{OUT}/catalog/{{visit}}/sources.json",
    wildcard_constraints:
        visit=OPSIM_VISIT,
    log:
        f"{OUT}/logs/catalog/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/catalog/{{visit}}.tsv"
    params:
        failure=failure_record("catalog", "visit"),
        visit=lambda wildcards: campaign.parse_exposure(wildcards.visit).visit,
        snap=lambda wildcards: campaign.parse_exposure(wildcards.visit).snap,
        sky=sky_catalog_options,
    shell:
        "dc2flow -v --failure-record {params.failure:q} opsim-visit {input.db:q} --visit {params.visit} --snap {params.snap}"
        " {params.sky} --visit-json {output.visit:q} --objects {output.objects:q} --sources {output.sources:q} > {log:q} 2>&1"
