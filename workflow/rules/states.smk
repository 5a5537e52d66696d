"""Improved maps of chosen states along the motion (explore.state_percentiles), both halves.

align_halves orients half set 2's PC1 as half set 1's (one sign); state_maps reconstructs
each half's particles in every state; fsc_states compares the halves' maps of each state.
"""

# the states asked for: one map per state and half
STATE_NAMES = [
    f"state_{index:02d}"
    for index, part in enumerate(
        str(CFG["explore"]["state_percentiles"] or "").split(",")
    )
    if part.strip()
]


rule align_halves:
    input:
        models=expand(f"{OUT}/vae/half{{half}}/model.pt", half=HALVES),
        latents=expand(f"{OUT}/vae/half{{half}}/latents.csv", half=HALVES),
    output:
        json=f"{OUT}/latent/alignment.json",
        record=f"{RECORDS}/align_halves.json",
    log:
        f"{LOGS}/align_halves.log",
    benchmark:
        f"{BENCH}/align_halves.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("align_halves")
    resources:
        **stage_resources("align_halves"),
    params:
        bad_input=bad_input_mark("align_halves"),
        settings=flags("deformed", only=("control_grid",)),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core align-halves --models {input.models:q}"
            " --latents {input.latents:q} {params.settings} --threads {threads}"
            " --out-json {output.json:q} --record {output.record:q} --log {log:q}"
        )


rule state_maps:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        inverse=inverse_model,
        consensus_fit=f"{OUT}/gaussians/warmup_half{{half}}.pt",
        alignment=f"{OUT}/latent/alignment.json",
    output:
        json=f"{OUT}/states/half{{half}}/states.json",
        maps=expand(f"{OUT}/states/half{{{{half}}}}/{{name}}.mrc", name=STATE_NAMES),
        references=expand(
            f"{OUT}/states/half{{{{half}}}}/{{name}}_reference.pt", name=STATE_NAMES
        ),
        record=f"{RECORDS}/state_maps_half{{half}}.json",
    log:
        f"{LOGS}/state_maps_half{{half}}.log",
    benchmark:
        f"{BENCH}/state_maps_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("state_maps")
    resources:
        **stage_resources("state_maps"),
    params:
        bad_input=bad_input_mark("state_maps"),
        deformed=flags(
            "deformed", only=("method", "control_grid", "batch_size", "tau2_fudge")
        ),
        states=flags("explore", only=("state_percentiles",)),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        inverse=inverse_flag,
        out_dir=lambda wildcards, output: Path(output.json).parent,
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core state-maps --star {input.star:q}"
            " {params.project_root} --halves {input.halves:q} --half {wildcards.half}"
            " --model {input.model:q} --latents {input.latents:q} {params.inverse}"
            " --consensus-fit {input.consensus_fit:q} --alignment {input.alignment:q}"
            " {params.deformed} {params.states} --threads {threads}"
            " --out-dir {params.out_dir:q} --out-json {output.json:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule fsc_states:
    input:
        states=expand(f"{OUT}/states/half{{half}}/states.json", half=HALVES),
        mask=MASK,
    output:
        json=f"{OUT}/states/fsc.json",
        summary=f"{OUT}/states/summary.txt",
        maps=expand(f"{OUT}/states/{{name}}.mrc", name=STATE_NAMES),
        record=f"{RECORDS}/fsc_states.json",
    log:
        f"{LOGS}/fsc_states.log",
    benchmark:
        f"{BENCH}/fsc_states.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("fsc_states")
    resources:
        **stage_resources("fsc_states"),
    params:
        bad_input=bad_input_mark("fsc_states"),
        out_dir=lambda wildcards, output: Path(output.json).parent,
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core fsc-states --states {input.states:q}"
            " --mask {input.mask:q} --out-dir {params.out_dir:q}"
            " --out-json {output.json:q} --out-summary {output.summary:q}"
            " --record {output.record:q} --log {log:q}"
        )
