"""Consensus half maps from the particles, and their FSC."""


rule reconstruct_consensus:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
    output:
        half1=f"{OUT}/consensus/half1.mrc",
        half2=f"{OUT}/consensus/half2.mrc",
        full=f"{OUT}/consensus/full.mrc",
        record=f"{RECORDS}/reconstruct_consensus.json",
    log:
        f"{LOGS}/reconstruct_consensus.log",
    benchmark:
        f"{BENCH}/reconstruct_consensus.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("reconstruct_consensus")
    resources:
        **stage_resources("reconstruct_consensus", resumes=True),
    params:
        bad_input=bad_input_mark("reconstruct_consensus"),
        settings=flags("reconstruct"),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        checkpoint_dir=f"{CHECKPOINTS}/reconstruct_consensus",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core reconstruct --star {input.star:q} {params.project_root}"
            " --halves {input.halves:q} --out-half1 {output.half1:q} --out-half2 {output.half2:q}"
            " --out-full {output.full:q} {params.settings}"
            " --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --record {output.record:q} --log {log:q}"
        )


rule fsc_consensus:
    input:
        half1=f"{OUT}/consensus/half1.mrc",
        half2=f"{OUT}/consensus/half2.mrc",
        full=f"{OUT}/consensus/full.mrc",
        mask=MASK,
        extra=optional_inputs(INPUTS["reference_map"]),
    output:
        tsv=f"{OUT}/consensus/fsc.tsv",
        json=f"{OUT}/consensus/fsc.json",
        png=report(
            f"{OUT}/consensus/fsc.png",
            caption="../report/fsc_consensus.rst",
            category="Resolution",
        ),
        record=f"{RECORDS}/fsc_consensus.json",
    log:
        f"{LOGS}/fsc_consensus.log",
    benchmark:
        f"{BENCH}/fsc_consensus.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("fsc_consensus")
    resources:
        **stage_resources("fsc_consensus"),
    params:
        bad_input=bad_input_mark("fsc_consensus"),
        reference=optional_flag("reference", INPUTS["reference_map"]),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core fsc --half1 {input.half1:q} --half2 {input.half2:q}"
            " --full {input.full:q} --mask {input.mask:q} {params.reference} --label consensus"
            " --out-tsv {output.tsv:q} --out-json {output.json:q} --out-png {output.png:q}"
            " --record {output.record:q} --log {log:q}"
        )
