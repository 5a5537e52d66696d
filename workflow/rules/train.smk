"""The two half sets' deformation VAEs, trained independently (one job per half)."""


rule train_vae:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        model=f"{OUT}/gaussians/warmup_half{{half}}.pt",
        atomic_model=optional_inputs(INPUTS["atomic_model"]),
        store=particle_store,
    output:
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        history=f"{OUT}/vae/half{{half}}/training.tsv",
        png=report(
            f"{OUT}/vae/half{{half}}/training.png",
            caption="../report/train_vae.rst",
            category="Deformations",
        ),
        record=f"{RECORDS}/train_vae_half{{half}}.json",
    log:
        f"{LOGS}/train_vae_half{{half}}.log",
    benchmark:
        f"{BENCH}/train_vae_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("train_vae")
    resources:
        **stage_resources("train_vae", resumes=True),
    params:
        bad_input=bad_input_mark("train_vae"),
        settings=flags("vae"),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        atomic_model=optional_flag("atomic-model", INPUTS["atomic_model"]),
        store=store_flag,
        local_copy=flags("store", only=("local_copy",)),
        checkpoint_dir=f"{CHECKPOINTS}/train_vae_half{{half}}",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core train-vae --star {input.star:q} {params.project_root}"
            " --halves {input.halves:q} --half {wildcards.half} --model {input.model:q}"
            " {params.settings} {params.atomic_model} {params.store} {params.local_copy}"
            " --checkpoint-dir {params.checkpoint_dir:q} --threads {threads}"
            " --out-model {output.model:q} --out-latents {output.latents:q}"
            " --out-history {output.history:q} --out-png {output.png:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule deformation_error:
    input:
        star=STAR,
        stacks=STACKS,
        halves=f"{OUT}/halves.csv",
        models=expand(f"{OUT}/vae/half{{half}}/model.pt", half=HALVES),
    output:
        json=f"{OUT}/vae/deformation_error.json",
        tsv=f"{OUT}/vae/deformation_error.tsv",
        gaussians=f"{OUT}/vae/deformation_error_gaussians.tsv",
        png=report(
            f"{OUT}/vae/deformation_error.png",
            caption="../report/deformation_error.rst",
            category="Motion",
        ),
        record=f"{RECORDS}/deformation_error.json",
    log:
        f"{LOGS}/deformation_error.log",
    benchmark:
        f"{BENCH}/deformation_error.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("deformation_error")
    resources:
        **stage_resources("deformation_error"),
    params:
        bad_input=bad_input_mark("deformation_error"),
        settings=flags("vae", only=("batch_size",)),
        regions=flags("report", only=("regions",)),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core deformation-error --star {input.star:q} {params.project_root}"
            " --halves {input.halves:q} --models {input.models:q} {params.settings} {params.regions}"
            " --out-json {output.json:q} --out-gaussians {output.gaussians:q} --out-png {output.png:q}"
            " --out-tsv {output.tsv:q} --threads {threads} --record {output.record:q} --log {log:q}"
        )
