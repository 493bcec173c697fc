# Stage 2b (scene.psf_model atmospheric only): per exposure ({visit}: its key), the atmosphere's phase screens, built once
# and written as plain .npy arrays beside screens.json; every render of the visit memory-maps them
# read-only, so a bundle's renders share one copy in the page cache (the estimates carry its size
# as visit_shared_gb, which the bundler counts once per visit in a bundle). The arrays are temp():
# removed once the visit's renders are done (3.2 GB per visit at imSim's 819.2 m / 0.1 m).


rule build_screens:
    input:
        visit=f"{OUT}/catalog/{{visit}}/visit.json",
    output:
        json=temp(f"{OUT}/screens/{{visit}}/screens.json"),
        screens=temp(f"{OUT}/screens/{{visit}}/screens.npy"),
        axes=temp(f"{OUT}/screens/{{visit}}/screens_axes.npy"),
    log:
        f"{OUT}/logs/screens/{{visit}}.log",
    benchmark:
        f"{OUT}/benchmarks/screens/{{visit}}.tsv"
    resources:
        mem_mb=screens_mem_mb,
    params:
        failure=failure_record("screens", "visit"),
        options=SCENE_OPTIONS,
    shell:
        "dc2flow -v --failure-record {params.failure:q} screens {input.visit:q} --out {output.json:q}"
        " --options {params.options:q} > {log:q} 2>&1"
