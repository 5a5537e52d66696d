"""The Gaussian pseudo-atom model of each half set: consensus fit, then warm-up."""


rule fit_consensus:
    input:
        map=f"{OUT}/consensus/half{{half}}.mrc",
        # read only to state the map's resolution in the quality record
        half_maps=[f"{OUT}/consensus/half1.mrc", f"{OUT}/consensus/half2.mrc"],
        mask=optional_inputs(
            INPUTS["mask"] if CFG["gaussians"]["use_input_mask"] else None
        ),
    output:
        model=f"{OUT}/gaussians/consensus_half{{half}}.pt",
        quality=f"{OUT}/gaussians/fit_quality_half{{half}}.json",
        map=f"{OUT}/gaussians/consensus_model_half{{half}}.mrc",
        png=report(
            f"{OUT}/gaussians/fit_quality_half{{half}}.png",
            caption="../report/fit_consensus.rst",
            category="Gaussian model",
        ),
        record=f"{RECORDS}/fit_consensus_half{{half}}.json",
    log:
        f"{LOGS}/fit_consensus_half{{half}}.log",
    benchmark:
        f"{BENCH}/fit_consensus_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("fit_consensus")
    resources:
        **stage_resources("fit_consensus", resumes=True),
    params:
        bad_input=bad_input_mark("fit_consensus"),
        settings=flags("gaussians", skip=("use_input_mask",)),
        mask=shell_text(
            lambda wildcards, input: optional_flag(
                "mask", input.mask[0] if input.mask else None
            )
        ),
        checkpoint_dir=f"{CHECKPOINTS}/fit_consensus_half{{half}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core fit-consensus --map {input.map:q}"
            " --half-maps {input.half_maps:q} {params.mask} {params.settings}"
            " --out-model {output.model:q} --out-quality {output.quality:q} --out-map {output.map:q}"
            " --out-png {output.png:q} --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --record {output.record:q} --log {log:q}"
        )


rule warmup:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        model=f"{OUT}/gaussians/consensus_half{{half}}.pt",
    output:
        model=f"{OUT}/gaussians/warmup_half{{half}}.pt",
        history=f"{OUT}/gaussians/warmup_half{{half}}.tsv",
        record=f"{RECORDS}/warmup_half{{half}}.json",
    log:
        f"{LOGS}/warmup_half{{half}}.log",
    benchmark:
        f"{BENCH}/warmup_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("warmup")
    resources:
        **stage_resources("warmup", resumes=True),
    params:
        bad_input=bad_input_mark("warmup"),
        settings=flags("warmup"),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        checkpoint_dir=f"{CHECKPOINTS}/warmup_half{{half}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core warmup --star {input.star:q} {params.project_root}"
            " --halves {input.halves:q} --half {wildcards.half} --model {input.model:q}"
            " {params.settings} --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --out-model {output.model:q} --out-history {output.history:q}"
            " --record {output.record:q} --log {log:q}"
        )
