# Stage 4: pack every sensor job into node-sized bundles (one Slurm group job each).
# The checkpoint writes the plan; render jobs read their bundle (group) and resources from it,
# and one finish_bundle job per bundle joins its renders, so Snakemake submits each bundle as one
# group job. Before the plan exists (a dry run), renders are listed ungrouped.


localrules:
    bundle_campaign,  # a second of solver time: not worth a Slurm job


checkpoint bundle_campaign:
    input:
        [f"{OUT}/estimates/{e.key}.tsv" for e in VISITS],
    output:
        plan=PLAN,
        summary=f"{BUNDLES}campaign.json",
    log:
        f"{OUT}/logs/bundle/{SHARD}campaign.log",
    benchmark:
        f"{OUT}/benchmarks/bundle/{SHARD}campaign.tsv"
    params:
        node=node_options(),
        estimates=estimates_dir,  # a folder and the exposure keys: no path list on the command line
        visits=",".join(e.key for e in VISITS),
    shell:
        "dc2flow bundle --estimates-dir {params.estimates:q} --visits {params.visits} {params.node} --out {output.plan:q} --summary {output.summary:q}"
        " > {log:q} 2>&1"


rule finish_bundle:
    input:
        images=bundle_images,
    output:
        f"{BUNDLES}done/{{bundle}}.tsv",
    log:
        f"{OUT}/logs/bundle/{SHARD}{{bundle}}.log",
    benchmark:
        f"{OUT}/benchmarks/bundle/{SHARD}{{bundle}}.tsv"
    group:
        bundle_of_join
    resources:
        mem_mb=256,
        runtime=1,
    shell:
        "dc2flow manifest {input.images:q} --out {output:q} > {log:q} 2>&1"
