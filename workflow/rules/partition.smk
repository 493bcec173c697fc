# Stage 2: per visit, fluxes and stamp sizes, and one object table per sensor.
# The declared output is the visit's partition index, written after every {det_name}.parquet is in
# place beside it: each render depends on that one file, so Snakemake's bookkeeping per render does
# not grow with the sensor count (with 189 declared outputs, or a directory() output, planning 100
# visits spent most of its time matching them). The job rewrites all the partitions every time.


rule partition_visit:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        objects=f"{OUT}/catalog/{{visit}}/objects.parquet",
    output:
        f"{OUT}/partitions/{{visit}}/index.tsv",
    log:
        f"{OUT}/logs/partition/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/partition/{{visit}}.tsv"
    params:
        out_dir=f"{OUT}/partitions/{{visit}}",
        failure=failure_record("partition", "visit"),
        sensors=",".join(SENSORS),
        options=PARTITION_OPTIONS,
    shell:
        "dc2flow -v --failure-record {params.failure:q} partition {input.visit:q} {input.objects:q} --out-dir {params.out_dir:q} --index {output:q}"
        " --sensors {params.sensors} --options {params.options:q} > {log:q} 2>&1"
