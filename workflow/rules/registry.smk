# Stage 7: the campaign registry. No compute job writes the database: each render job writes one
# small record per sensor next to its image (on the compute node, see render.smk), and one job per
# visit on the driver host (register_visit, a local rule) merges them in one transaction, adding
# each render's run time and memory (its benchmark record) and the visit's validation records.
# SQLite on a parallel file system with writers on many nodes corrupts; one writer host with
# transactions is safe.


localrules:
    register_visit,  # the only database writer: runs on the host that drives Snakemake


rule register_visit:
    input:
        records=visit_registry_records,
        validated=f"{OUT}/validation/{{visit}}/summary.tsv",  # made with the per-sensor records below
    output:
        f"{OUT}/registry/visits/{{visit}}.tsv",
    log:
        f"{OUT}/logs/registry/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/registry/{{visit}}.tsv"
    params:
        db=REGISTRY_URL,
        # templates with the sensor list, not path lists: no command line grows with the campaign
        sensors=",".join(SENSORS),
        records=visit_record_template,
        validations=visit_validation_template,
        benchmarks=visit_benchmark_template,  # not inputs: no rule makes them; read when present
    shell:
        "dc2flow -v register --sensors {params.sensors} --records-template {params.records:q}"
        " --validations-template {params.validations:q} --benchmarks-template {params.benchmarks:q}"
        " --db {params.db:q} --summary {output:q} > {log:q} 2>&1"
