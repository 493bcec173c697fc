# Stage 7: the campaign registry. No compute job writes the database: each render's bundle job
# writes one small record per sensor (record_sensor, on the compute node), and one job per visit
# on the driver host (register_visit, a local rule) merges them in one transaction. SQLite on a
# parallel file system with writers on many nodes corrupts; one writer host with transactions is safe.


localrules:
    register_visit,  # the only database writer: runs on the host that drives Snakemake


rule record_sensor:
    input:
        unpack(sensor_outputs),  # image (and truth table)
        validation=f"{OUT}/validation/{{visit}}/{{det_name}}.json",
    output:
        f"{OUT}/registry/records/{{visit}}/{{det_name}}.json",
    log:
        f"{OUT}/logs/registry/{{visit}}/{{det_name}}.log",
    benchmark:
        f"{OUT}/benchmarks/registry/{{visit}}/{{det_name}}.tsv"
    group:
        bundle_of_render  # runs inside the bundle's Slurm job, after the render; finish_bundle waits for it
    resources:
        mem_mb=128,  # measured peak RSS 66 MB; the group's record layer must fit the bundle's memory
        runtime=1,
    params:
        outdir=output_root,  # stored paths are relative to it
        benchmark=record_benchmark,  # not an input: a benchmark file is no rule's output; read if present
        plan=PLAN,  # the bundle is looked up there (a param from the checkpoint would change between runs)
    shell:
        "dc2flow record {input.image:q} --outdir {params.outdir:q} --benchmark {params.benchmark:q}"
        " --validation {input.validation:q} --plan {params.plan:q} --out {output:q} > {log:q} 2>&1"


rule register_visit:
    input:
        visit_registry_records,
    output:
        f"{OUT}/registry/visits/{{visit}}.tsv",
    log:
        f"{OUT}/logs/registry/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/registry/{{visit}}.tsv"
    params:
        db=REGISTRY_URL,
    shell:
        "dc2flow -v register {input:q} --db {params.db:q} --summary {output:q} > {log:q} 2>&1"
