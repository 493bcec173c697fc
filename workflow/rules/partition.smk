# Stage 2: per visit, fluxes and stamp sizes, and one object table per sensor.


rule partition_visit:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        objects=f"{OUT}/catalog/{{visit}}/objects.parquet",
    output:
        [f"{OUT}/partitions/{{visit}}/{det_name}.parquet" for det_name in SENSORS],
    log:
        f"{OUT}/logs/partition/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/partition/{{visit}}.tsv"
    params:
        failure=failure_record("partition"),
        out_dir=partition_dir,
        sensors=",".join(SENSORS),
        options=PARTITION_OPTIONS,
    shell:
        "dc2flow -v --failure-record {params.failure:q} partition {input.visit:q} {input.objects:q} --out-dir {params.out_dir:q}"
        " --sensors {params.sensors} --options {params.options:q} > {log:q} 2>&1"
