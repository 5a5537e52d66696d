"""Exploration of each half set's latent space: maps and a movie along PC1, for the report
and for ChimeraX (python -m dynamight_core explore ... does the same by hand)."""

EXPLORE = CFG["explore"]
RECONSTRUCT_NEAREST = EXPLORE["reconstruct_nearest"] > 0
# the files the stages write (dynamight_core.explore.movie.frame_names: 3 digits or more)
STATE_MAPS = [f"state_{index:03d}.mrc" for index in range(EXPLORE["states"])]
MOVIE_FRAMES = [
    f"frame_{index:0{max(3, len(str(EXPLORE['movie_frames'] - 1)))}d}.mrc"
    for index in range(EXPLORE["movie_frames"])
]


rule explore_maps:
    input:
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        alignment=f"{OUT}/latent/alignment.json",
        error=f"{OUT}/vae/deformation_error_gaussians.tsv",
        # with explore.reconstruct_nearest: the particles and the half set's inverse network
        particles=[STAR, *STACKS, f"{OUT}/halves.csv"] if RECONSTRUCT_NEAREST else [],
        inverse=lambda wildcards: (
            inverse_model(wildcards) if RECONSTRUCT_NEAREST else []
        ),
    output:
        maps=expand(f"{OUT}/explore/half{{{{half}}}}/pc1/{{name}}", name=STATE_MAPS),
        points=f"{OUT}/explore/half{{half}}/pc1/points.csv",
        json=f"{OUT}/explore/half{{half}}/pc1/maps.json",
        cxc=f"{OUT}/explore/half{{half}}/pc1/maps.cxc",
        cif=f"{OUT}/explore/half{{half}}/pseudo_atoms.cif",
        pdb=f"{OUT}/explore/half{{half}}/pseudo_atoms.pdb",
        record=f"{RECORDS}/explore_maps_half{{half}}.json",
    log:
        f"{LOGS}/explore_maps_half{{half}}.log",
    benchmark:
        f"{BENCH}/explore_maps_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("explore_maps")
    resources:
        **stage_resources("explore_maps"),
    params:
        bad_input=bad_input_mark("explore_maps"),
        settings=flags(
            "explore",
            only=(
                "states",
                "low_percentile",
                "high_percentile",
                "bfactor",
                "reconstruct_nearest",
            ),
        ),
        # the deformed reconstruction's settings only matter (and only re-run the
        # maps) when they reconstruct from the nearest particles
        deformed=(
            flags(
                "deformed", only=("method", "control_grid", "batch_size", "tau2_fudge")
            )
            if RECONSTRUCT_NEAREST
            else ""
        ),
        particles=shell_text(
            lambda wildcards: (
                f"--star {shlex.quote(STAR)} --halves {shlex.quote(f'{OUT}/halves.csv')}"
                f" {optional_flag('project-root', INPUTS['project_root'])}"
                if RECONSTRUCT_NEAREST
                else ""
            )
        ),
        inverse=inverse_flag,
        out_dir=f"{OUT}/explore/half{{half}}/pc1",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core explore maps --model {input.model:q}"
            " --latents {input.latents:q} --alignment {input.alignment:q}"
            " --error-tsv {input.error:q} {params.settings}"
            " {params.deformed} {params.particles} {params.inverse} --threads {threads}"
            " --out-dir {params.out_dir:q} --out-cif {output.cif:q} --out-pdb {output.pdb:q}"
            " --record {output.record:q} --log {log:q}"
        )


rule explore_movie:
    input:
        model=f"{OUT}/vae/half{{half}}/model.pt",
        latents=f"{OUT}/vae/half{{half}}/latents.csv",
        alignment=f"{OUT}/latent/alignment.json",
    output:
        frames=expand(
            f"{OUT}/explore/half{{{{half}}}}/movie/{{name}}", name=MOVIE_FRAMES
        ),
        cxc=f"{OUT}/explore/half{{half}}/movie/movie.cxc",
        cif=f"{OUT}/explore/half{{half}}/movie/movie.cif",
        pdb=f"{OUT}/explore/half{{half}}/movie/movie.pdb",
        json=f"{OUT}/explore/half{{half}}/movie/movie.json",
        gif=report(
            f"{OUT}/explore/half{{half}}/movie/movie.gif",
            caption="../report/explore_movie.rst",
            category="Latent space",
            subcategory="half set {half}",
        ),
        record=f"{RECORDS}/explore_movie_half{{half}}.json",
    log:
        f"{LOGS}/explore_movie_half{{half}}.log",
    benchmark:
        f"{BENCH}/explore_movie_half{{half}}.tsv"
    conda:
        "../../envs/dynamight.yaml"
    threads: threads_for("explore_movie")
    resources:
        **stage_resources("explore_movie"),
    params:
        bad_input=bad_input_mark("explore_movie"),
        settings=flags(
            "explore",
            only=("movie_frames", "movie_fps", "low_percentile", "high_percentile"),
        ),
        out_dir=f"{OUT}/explore/half{{half}}/movie",
        version=VERSION,
    shell:
        unless_bad_input(
            "python -m dynamight_core explore movie --model {input.model:q}"
            " --latents {input.latents:q} --alignment {input.alignment:q}"
            " {params.settings} --threads {threads}"
            " --out-dir {params.out_dir:q} --out-animation {output.gif:q}"
            " --record {output.record:q} --log {log:q}"
        )
