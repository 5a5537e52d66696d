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
        " --star {input.star} {params.project_root} --inputs {input.extra}"
        " --records {input.records} --code-dir {params.code_dir} --out {output} > {log} 2>&1"


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
        negative=optional_inputs(CFG["report"]["negative_control"]),
    output:
        html=report(
            f"{OUT}/report.html",
            caption="../report/validation_report.rst",
            category="Validation report",
        ),
        summary=f"{OUT}/summary.json",
        gain=f"{OUT}/report/gain.png",
        text=f"{OUT}/report/summary.txt",
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/dynamight.yaml"
    params:
        negative=optional_flag("negative-control", CFG["report"]["negative_control"]),
        settings=flags("report", only=("significance_z", "state_disagreement_fraction")),
    shell:
        "python -m dynamight_core report --postprocess-json {input.postprocess_json}"
        " --postprocess-png {input.postprocess_png} --postprocess-tsv {input.postprocess_tsv}"
        " --local-resolution-json {input.local_json} --local-resolution-png {input.local_png}"
        " --deformation-error-json {input.error_json}"
        " --deformation-error-png {input.error_png} --gaussians-tsv {input.gaussians}"
        " --local-resolution-maps {input.local_maps} --latent-json {input.latent_json}"
        " --latent-png {input.latent_png} --displacement-png {input.displacement_png}"
        " --training-png {input.training_png} --movie-gif {input.movie_gif}"
        " --movie-json {input.movie_json} --maps-json {input.maps_json}"
        " --fsc-deformed-png {input.fsc_png} --fsc-deformed-json {input.fsc_json:q}"
        " --provenance {input.provenance}"
        " --mask {input.mask} {params.negative} {params.settings}"
        " --out-html {output.html} --out-summary {output.summary}"
        " --out-gain-png {output.gain} --out-text {output.text} > {log} 2>&1"
