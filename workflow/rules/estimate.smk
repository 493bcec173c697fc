# Stage 3: per visit, each sensor's predicted render memory and wall time.


rule estimate_visit:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
        partitions=f"{OUT}/partitions/{{visit}}/index.tsv",  # {det_name}.parquet are beside it
        model=model_input(),
    output:
        f"{OUT}/estimates/{{visit}}.tsv",
    log:
        f"{OUT}/logs/estimate/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/estimate/{{visit}}.tsv"
    params:
        partition_dir=partition_dir,
        failure=failure_record("estimate", "visit"),
        sensors=",".join(SENSORS),
        model=model_option(),
        job_overhead_gb=config["estimate"]["job_overhead_gb"],
        min_mem_gb=config["estimate"]["min_mem_gb"],
        options=OPTIONS,
    shell:
        "dc2flow -v --failure-record {params.failure:q} estimate {input.visit:q} --partition-dir {params.partition_dir:q} --sensors {params.sensors}"
        " --out {output:q} {params.model} --job-overhead-gb {params.job_overhead_gb}"
        " --min-mem-gb {params.min_mem_gb}"
        " --options {params.options:q} > {log:q} 2>&1"
