"""The provenance record of a run."""


localrules:
    provenance,


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
