"""Validation: one mask, post-processing of every pair of half maps, local resolution and
the latent space, for the report."""


rule make_mask:
    input:
        map=f"{OUT}/consensus/full.mrc",
    output:
        mask=f"{OUT}/postprocess/mask.mrc",
        json=f"{OUT}/postprocess/mask.json",
        record=f"{RECORDS}/make_mask.json",
    log:
        f"{LOGS}/make_mask.log",
    benchmark:
        f"{BENCH}/make_mask.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("make_mask")
    resources:
        **stage_resources("make_mask"),
    params:
        bad_input=bad_input_mark("make_mask"),
        settings=flags(
            "postprocess",
            only=(
                "mask_threshold",
                "mask_lowpass_a",
                "mask_extend_a",
                "mask_soft_edge_a",
            ),
        ),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core make-mask --map {input.map:q} {params.settings}"
            " --out-mask {output.mask:q} --out-json {output.json:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule postprocess:
    input:
        halves=expand(f"{OUT}/{{{{label}}}}/half{{half}}.mrc", half=HALVES),
        mask=MASK,
    output:
        sharpened=f"{OUT}/postprocess/{{label}}/sharpened.mrc",
        tsv=f"{OUT}/postprocess/{{label}}/fsc.tsv",
        json=f"{OUT}/postprocess/{{label}}/postprocess.json",
        png=report(
            f"{OUT}/postprocess/{{label}}/postprocess.png",
            caption="../report/postprocess.rst",
            category="Resolution",
            subcategory="{label}",
        ),
        record=f"{RECORDS}/postprocess_{{label}}.json",
    log:
        f"{LOGS}/postprocess_{{label}}.log",
    benchmark:
        f"{BENCH}/postprocess_{{label}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("postprocess")
    resources:
        **stage_resources("postprocess"),
    params:
        bad_input=bad_input_mark("postprocess"),
        settings=flags(
            "postprocess", only=("randomise_at_fsc", "guinier_from_a", "bfactor_a2")
        ),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core postprocess --half-maps {input.halves:q}"
            " --mask {input.mask:q} {params.settings} --label {wildcards.label}"
            " --out-sharpened {output.sharpened:q} --out-tsv {output.tsv:q}"
            " --out-json {output.json:q} --out-png {output.png:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule local_resolution:
    input:
        consensus=expand(f"{OUT}/consensus/half{{half}}.mrc", half=HALVES),
        deformed=expand(f"{OUT}/deformed/half{{half}}.mrc", half=HALVES),
        mask=MASK,
    output:
        consensus=f"{OUT}/local_resolution/consensus.mrc",
        deformed=f"{OUT}/local_resolution/deformed.mrc",
        difference=f"{OUT}/local_resolution/gain.mrc",
        json=f"{OUT}/local_resolution/local_resolution.json",
        png=report(
            f"{OUT}/local_resolution/local_resolution.png",
            caption="../report/local_resolution.rst",
            category="Resolution",
        ),
        record=f"{RECORDS}/local_resolution.json",
    log:
        f"{LOGS}/local_resolution.log",
    benchmark:
        f"{BENCH}/local_resolution.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("local_resolution")
    resources:
        **stage_resources("local_resolution"),
    params:
        bad_input=bad_input_mark("local_resolution"),
        settings=flags("local_resolution"),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core local-resolution"
            " --consensus-half-maps {input.consensus:q} --deformed-half-maps {input.deformed:q}"
            " --mask {input.mask:q} {params.settings} --threads {threads}"
            " --out-consensus {output.consensus:q} --out-deformed {output.deformed:q}"
            " --out-difference {output.difference:q} --out-json {output.json:q}"
            " --out-png {output.png:q} --record {output.record:q} --log {log:q}"
        )


rule latent_space:
    input:
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        alignment=f"{OUT}/latent/alignment.json",
    output:
        png=report(
            f"{OUT}/latent/half{{half}}/latent_space.png",
            caption="../report/latent_space.rst",
            category="Latent space",
            subcategory="half set {half}",
        ),
        displacement=f"{OUT}/latent/half{{half}}/displacement.png",
        json=f"{OUT}/latent/half{{half}}/latent_space.json",
        record=f"{RECORDS}/latent_space_half{{half}}.json",
    log:
        f"{LOGS}/latent_space_half{{half}}.log",
    benchmark:
        f"{BENCH}/latent_space_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("latent_space")
    resources:
        **stage_resources("latent_space"),
    params:
        bad_input=bad_input_mark("latent_space"),
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core latent-space --model {input.model:q}"
            " --latents {input.latents:q} --alignment {input.alignment:q}"
            " --threads {threads} --out-png {output.png:q}"
            " --out-displacement-png {output.displacement:q} --out-json {output.json:q}"
            " --record {output.record:q} --log {log:q}"
        )
