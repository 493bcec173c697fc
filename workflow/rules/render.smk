# Stage 5: one job per (exposure, sensor): GalSim eimage + truth table, in its bundle's group job.
# The same job writes the image's registry record (checksums, provenance, bundle): one job per
# sensor in the DAG keeps Snakemake's planning of a campaign fast (see README, "Campaigns").
# One rule per snap of the run (render_sensor for snap 0, render_sensor_snap1 for snap 1, ...):
# the image is named by imSim's {visit:08d}/eimage_{visit:08d}-{snap}-..., the stage files by the
# exposure key ({visit} for snap 0, {visit}-1 for snap 1), and a rule's outputs must share their
# wildcards; here {visit} is the 8-digit visit and the snap is the rule's.


for _snap in SNAPS:
    _fns = RenderFunctions(_snap)
    _key = _fns.key  # the exposure key as a pattern: {visit} or {visit}-1

    rule:
        name:
            "render_sensor" if _snap == 0 else f"render_sensor_snap{_snap}"
        input:
            # the exposure's partition index (its {det_name}.parquet is beside it); the header and sources
            # come with it (one parse job writes them with the objects, which partition_visit reads, so
            # a change to them remakes the partitions first): one input per sensor keeps planning fast
            partitions=f"{OUT}/partitions/{_key}/index.tsv",
            plan=ancient(PLAN),  # wait for the plan; a new plan does not redo finished images
            screens=screens_inputs(_key),  # scene.psf_model atmospheric: the exposure's screens (atmosphere.smk), mapped
        output:
            image=f"{OUT}/{{visit}}/eimage_{{visit}}-{_snap}-{{band}}-{{det_name}}-det{{det_num}}.fits",
            truth=f"{OUT}/{{visit}}/centroid_{{visit}}-{_snap}-{{band}}-{{det_name}}-det{{det_num}}.txt.gz",
            record=f"{OUT}/registry/records/{_key}/{{band}}-{{det_name}}-det{{det_num}}.json",
        wildcard_constraints:
            visit=r"\d{8}",  # the visit here; the snap is the rule's
        log:
            f"{OUT}/logs/render/{_key}/{{band}}-{{det_name}}-det{{det_num}}.log",
        benchmark:
            f"{OUT}/benchmarks/render/{_key}/{{band}}-{{det_name}}-det{{det_num}}.tsv"
        group:
            _fns.bundle_of_render
        resources:
            mem_mb=_fns.render_mem_mb,
            runtime=_fns.render_runtime_min,
        params:
            # the job's exact peak RSS beside its benchmark (X.tsv -> X.peak.json, dc2flow.io.read_benchmark)
            peak=f"{OUT}/benchmarks/render/{_key}/{{band}}-{{det_name}}-det{{det_num}}.peak.json",
            partition=f"{OUT}/partitions/{_key}/{{det_name}}.parquet",
            visit=f"{OUT}/catalog/{_key}/visit.json",
            sources=f"{OUT}/catalog/{_key}/sources.json",
            failure=f"{OUT}/failures/render/{_key}_{{band}}_{{det_name}}_{{det_num}}.json",  # see failure_record
            attempt=_fns.attempt_pattern,  # the retry reads why this attempt failed (dc2flow.retry)
            options=OPTIONS,
            root=output_root,  # stored paths in the record are relative to it
            shard=config["shard"],  # a sharded campaign's bundles are recorded as {shard}/{bundle}
            screens=screens_option(_key),  # --screens {input.screens}'s JSON, or nothing
        shell:
            "dc2flow -v --failure-record {params.failure:q} --attempt-record {params.attempt:q} --peak-record {params.peak:q}"
            " --attempt-mem-mb {resources.mem_mb} --attempt-runtime-min {resources.runtime} render {params.visit:q} {params.partition:q} --det-name {wildcards.det_name}"
            " --sources {params.sources:q} --out {output.image:q} --truth {output.truth:q}"
            " --record {output.record:q} --record-root {params.root:q} --plan {input.plan:q} --shard={params.shard:q} {params.screens}"
            " --options {params.options:q} > {log:q} 2>&1"
