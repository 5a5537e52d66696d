"""Each half set's particle store: the training grid's transforms in one contiguous file."""


rule store_particles:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
    output:
        # written beside it and renamed when complete (manifest last): never half there
        store=directory(f"{OUT}/store/half{{half}}"),
        record=f"{RECORDS}/store_particles_half{{half}}.json",
    log:
        f"{LOGS}/store_particles_half{{half}}.log",
    benchmark:
        f"{BENCH}/store_particles_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("store_particles")
    resources:
        **stage_resources("store_particles"),
    params:
        bad_input=bad_input_mark("store_particles"),
        settings=flags("store", only=("precision",)),
        grid=flags("vae", only=("max_resolution_a", "encoder_px")),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core store-particles --star {input.star:q} {params.project_root}"
            " --halves {input.halves:q} --half {wildcards.half} {params.settings} {params.grid}"
            " --threads {threads} --out {output.store:q} --record {output.record:q} --log {log:q}"
        )
