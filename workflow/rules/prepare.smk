"""Demo data and the half-set split."""


rule simulate:
    output:
        star=f"{SIM}/particles.star",
        stack=f"{SIM}/particles.mrcs",
        mask=f"{SIM}/mask.mrc",
        truth=f"{SIM}/truth.csv",
        average=f"{SIM}/truth/average.mrc",
        mid_state=f"{SIM}/truth/mid_state.mrc",
        motion=f"{SIM}/truth/motion.json",
        record=f"{RECORDS}/simulate.json",
    log:
        f"{LOGS}/simulate.log",
    benchmark:
        f"{BENCH}/simulate.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("simulate")
    resources:
        **stage_resources("simulate"),
    params:
        bad_input=bad_input_mark("simulate"),
        out_dir=lambda wildcards, output: str(Path(output.star).parent),
        settings=flags("simulate", skip=("out_dir",)),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core simulate --out {params.out_dir:q} {params.settings}"
            " --record {output.record:q} --log {log:q}"
        )


rule split_halves:
    input:
        star=STAR,
        stacks=STACKS,
    output:
        halves=f"{OUT}/halves.csv",
        record=f"{RECORDS}/split_halves.json",
    log:
        f"{LOGS}/split_halves.log",
    benchmark:
        f"{BENCH}/split_halves.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("split_halves")
    resources:
        **stage_resources("split_halves"),
    params:
        bad_input=bad_input_mark("split_halves"),
        settings=flags("split"),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core split-halves --star {input.star:q} {params.project_root}"
            " --out {output.halves:q} {params.settings} --record {output.record:q} --log {log:q}"
        )
