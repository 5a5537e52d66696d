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
            "python -m dynamight_core reconstruct --star {input.star} {params.project_root}"
            " --halves {input.halves} --out-half1 {output.half1} --out-half2 {output.half2}"
            " --out-full {output.full} {params.settings}"
            " --checkpoint-dir {params.checkpoint_dir} --threads {threads}"
            " --record {output.record} > {log} 2>&1"
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
            "python -m dynamight_core fsc --half1 {input.half1} --half2 {input.half2}"
            " --full {input.full} --mask {input.mask} {params.reference} --label consensus"
            " --out-tsv {output.tsv} --out-json {output.json} --out-png {output.png}"
            " --record {output.record} > {log} 2>&1"
        )
