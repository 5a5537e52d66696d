"""Improved half maps: the particles brought back through each half set's own motions.

Wildcard ``run``: ``deformed`` (the real run) or ``null`` (the null control: the same
reconstruction with each particle's latent replaced by another's, report.null_control).
"""


rule fit_inverse:
    input:
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
    output:
        model=f"{OUT}/inverse/half{{half}}.pt",
        json=f"{OUT}/inverse/half{{half}}.json",
        record=f"{RECORDS}/fit_inverse_half{{half}}.json",
    log:
        f"{LOGS}/fit_inverse_half{{half}}.log",
    benchmark:
        f"{BENCH}/fit_inverse_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("fit_inverse")
    resources:
        **stage_resources("fit_inverse", resumes=True),
    params:
        bad_input=bad_input_mark("fit_inverse"),
        settings=flags("inverse"),
        checkpoint_dir=f"{CHECKPOINTS}/fit_inverse_half{{half}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core fit-inverse --model {input.model:q} --latents {input.latents:q}"
            " {params.settings} --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --out-model {output.model:q} --out-json {output.json:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule backproject_deformed:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        inverse=inverse_model,
        consensus_fit=f"{OUT}/gaussians/warmup_half{{half}}.pt",
    output:
        sums=f"{OUT}/{{run}}/half{{half}}/shard{{shard}}.pt",
        record=f"{RECORDS}/backproject_{{run}}_half{{half}}_shard{{shard}}.json",
    log:
        f"{LOGS}/backproject_{{run}}_half{{half}}_shard{{shard}}.log",
    benchmark:
        f"{BENCH}/backproject_{{run}}_half{{half}}_shard{{shard}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("backproject_deformed")
    resources:
        **stage_resources("backproject_deformed", resumes=True),
    params:
        bad_input=bad_input_mark("backproject_deformed"),
        settings=flags(
            "deformed",
            only=(
                "method",
                "reference",
                "control_grid",
                "shards",
                "batch_size",
                "checkpoint_every",
            ),
        ),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        inverse=inverse_flag,
        null=null_control_flag,
        checkpoint_dir=f"{CHECKPOINTS}/backproject_{{run}}_half{{half}}_shard{{shard}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core backproject-deformed --star {input.star:q}"
            " {params.project_root} --halves {input.halves:q} --half {wildcards.half}"
            " --model {input.model:q} --latents {input.latents:q} {params.inverse} {params.null}"
            " --consensus-fit {input.consensus_fit:q}"
            " {params.settings} --shard {wildcards.shard}"
            " --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --out-sums {output.sums:q} --record {output.record:q} --log {log:q}"
        )


rule solve_deformed:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        inverse=inverse_model,
        consensus_fit=f"{OUT}/gaussians/warmup_half{{half}}.pt",
        sums=expand(
            f"{OUT}/{{{{run}}}}/half{{{{half}}}}/shard{{shard}}.pt", shard=SHARDS
        ),
    output:
        map=f"{OUT}/{{run}}/half{{half}}.mrc",
        history=f"{OUT}/{{run}}/half{{half}}/solve.tsv",
        iterations=f"{OUT}/{{run}}/half{{half}}/iterations.pt",
        reference=f"{OUT}/{{run}}/half{{half}}/reference_state.pt",
        record=f"{RECORDS}/solve_{{run}}_half{{half}}.json",
    log:
        f"{LOGS}/solve_{{run}}_half{{half}}.log",
    benchmark:
        f"{BENCH}/solve_{{run}}_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("solve_deformed")
    resources:
        **stage_resources("solve_deformed", resumes=True),
    params:
        bad_input=bad_input_mark("solve_deformed"),
        settings=flags(
            "deformed",
            only=(
                "method",
                "reference",
                "control_grid",
                "batch_size",
                "iterations",
                "tau2_fudge",
            ),
        ),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        inverse=inverse_flag,
        null=null_control_flag,
        checkpoint_dir=f"{CHECKPOINTS}/solve_{{run}}_half{{half}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core solve-deformed --star {input.star:q}"
            " {params.project_root} --halves {input.halves:q} --half {wildcards.half}"
            " --model {input.model:q} --latents {input.latents:q} {params.inverse} {params.null}"
            " --sums {input.sums:q} --consensus-fit {input.consensus_fit:q} {params.settings}"
            " --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --out-map {output.map:q} --out-history {output.history:q}"
            " --out-iterations {output.iterations:q} --out-reference {output.reference:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule fsc_deformed:
    input:
        halves=expand(f"{OUT}/deformed/half{{half}}.mrc", half=HALVES),
        iterations=expand(f"{OUT}/deformed/half{{half}}/iterations.pt", half=HALVES),
        states=expand(f"{OUT}/deformed/half{{half}}/reference_state.pt", half=HALVES),
        consensus=expand(f"{OUT}/consensus/half{{half}}.mrc", half=HALVES),
        consensus_full=f"{OUT}/consensus/full.mrc",
        mask=MASK,
        extra=optional_inputs(INPUTS["reference_map"], INPUTS["reference_state"]),
    output:
        full=f"{OUT}/deformed/full.mrc",
        tsv=f"{OUT}/deformed/fsc.tsv",
        json=f"{OUT}/deformed/fsc.json",
        png=report(
            f"{OUT}/deformed/fsc.png",
            caption="../report/fsc_deformed.rst",
            category="Resolution",
        ),
        summary=f"{OUT}/deformed/summary.txt",
        record=f"{RECORDS}/fsc_deformed.json",
    log:
        f"{LOGS}/fsc_deformed.log",
    benchmark:
        f"{BENCH}/fsc_deformed.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("fsc_deformed")
    resources:
        **stage_resources("fsc_deformed"),
    params:
        bad_input=bad_input_mark("fsc_deformed"),
        reference=optional_flag("reference", INPUTS["reference_map"]),
        state=optional_flag("reference-state", INPUTS["reference_state"]),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core fsc-deformed --half-maps {input.halves:q}"
            " --iterations {input.iterations:q} --reference-states {input.states:q}"
            " --consensus-half-maps {input.consensus:q}"
            " --consensus-full {input.consensus_full:q} --mask {input.mask:q} {params.reference}"
            " {params.state}"
            " --out-full {output.full:q} --out-tsv {output.tsv:q} --out-json {output.json:q}"
            " --out-png {output.png:q} --out-summary {output.summary:q}"
            " --record {output.record:q} --log {log:q}"
        )
