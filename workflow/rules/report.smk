"""The provenance record of a run."""


localrules:
    provenance,
    report,


rule provenance:
    input:
        star=STAR,
        stacks=STACKS,
        records=stage_records(),
        extra=optional_inputs(
            INPUTS["mask"], INPUTS["reference_map"], INPUTS["reference_state"]
        ),
    output:
        f"{OUT}/provenance.json",
    log:
        f"{LOGS}/provenance.log",
    conda:
        "../../envs/dynamight.yaml"
    params:
        config=config_json(),
        project_root=optional_flag("project-root", INPUTS["project_root"]),
        code_dir=CODE_DIR,
        version=VERSION,
    shell:
        "python -m dynamight_core provenance --config-json {params.config}"
        " --star {input.star:q} {params.project_root} --inputs {input.extra:q}"
        " --records {input.records:q} --code-dir {params.code_dir:q} --out {output:q} --log {log:q}"


rule report:
    input:
        postprocess_json=postprocessed("postprocess.json"),
        postprocess_png=postprocessed("postprocess.png"),
        postprocess_tsv=postprocessed("fsc.tsv"),
        local_json=f"{OUT}/local_resolution/local_resolution.json",
        local_png=f"{OUT}/local_resolution/local_resolution.png",
        error_json=f"{OUT}/vae/deformation_error.json",
        error_png=f"{OUT}/vae/deformation_error.png",
        gaussians=f"{OUT}/vae/deformation_error_gaussians.tsv",
        local_maps=expand(
            f"{OUT}/local_resolution/{{label}}.mrc", label=("consensus", "deformed")
        ),
        latent_json=expand(f"{OUT}/latent/half{{half}}/latent_space.json", half=HALVES),
        latent_png=expand(f"{OUT}/latent/half{{half}}/latent_space.png", half=HALVES),
        displacement_png=expand(
            f"{OUT}/latent/half{{half}}/displacement.png", half=HALVES
        ),
        training_png=expand(f"{OUT}/vae/half{{half}}/training.png", half=HALVES),
        movie_gif=expand(f"{OUT}/explore/half{{half}}/movie/movie.gif", half=HALVES),
        movie_json=expand(f"{OUT}/explore/half{{half}}/movie/movie.json", half=HALVES),
        maps_json=expand(f"{OUT}/explore/half{{half}}/pc1/maps.json", half=HALVES),
        fsc_png=f"{OUT}/deformed/fsc.png",
        fsc_json=f"{OUT}/deformed/fsc.json",
        provenance=f"{OUT}/provenance.json",
        mask=MASK,
        half_maps=expand(
            f"{OUT}/{{label}}/half{{half}}.mrc", label=POSTPROCESSED, half=HALVES
        ),
        mask_json=optional_inputs(None if INPUTS["mask"] else MASK_JSON),
        negative=optional_inputs(CFG["report"]["negative_control"]),
    output:
        html=report(
            f"{OUT}/report.html",
            caption="../report/validation_report.rst",
            category="Validation report",
        ),
        summary=f"{OUT}/summary.json",
        gain=f"{OUT}/report/gain.png",
        maps=f"{OUT}/report/maps.png",
        text=f"{OUT}/report/summary.txt",
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/dynamight.yaml"
    params:
        negative=optional_flag("negative-control", CFG["report"]["negative_control"]),
        mask_json=optional_flag("mask-json", None if INPUTS["mask"] else MASK_JSON),
        settings=flags(
            "report",
            only=(
                "significance_z",
                "state_disagreement_fraction",
                "min_gain_fsc_area",
                "min_motion_fraction",
                "moving_region_fraction",
            ),
        ),
        split=flags("split", only=("min_particles_per_half",)),
        postprocess=flags("postprocess", only=("randomise_at_fsc",)),
    shell:
        "python -m dynamight_core report --postprocess-json {input.postprocess_json:q}"
        " --postprocess-png {input.postprocess_png:q} --postprocess-tsv {input.postprocess_tsv:q}"
        " --local-resolution-json {input.local_json:q} --local-resolution-png {input.local_png:q}"
        " --deformation-error-json {input.error_json:q}"
        " --deformation-error-png {input.error_png:q} --gaussians-tsv {input.gaussians:q}"
        " --local-resolution-maps {input.local_maps:q} --latent-json {input.latent_json:q}"
        " --latent-png {input.latent_png:q} --displacement-png {input.displacement_png:q}"
        " --training-png {input.training_png:q} --movie-gif {input.movie_gif:q}"
        " --movie-json {input.movie_json:q} --maps-json {input.maps_json:q}"
        " --fsc-deformed-png {input.fsc_png:q} --fsc-deformed-json {input.fsc_json:q}"
        " --provenance {input.provenance:q}"
        " --mask {input.mask:q} --half-maps {input.half_maps:q} {params.mask_json}"
        " {params.negative} {params.settings} {params.split} {params.postprocess}"
        " --out-html {output.html:q} --out-summary {output.summary:q}"
        " --out-gain-png {output.gain:q} --out-maps-png {output.maps:q}"
        " --out-text {output.text:q} --log {log:q}"
