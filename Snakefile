"""DynaMight workflow: motions from cryo-EM particles and improved maps.

Run `snakemake --profile slurm` on a cluster, `snakemake --profile profiles/local` on a
workstation; settings are in config.yaml.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/consensus.smk"
include: "workflow/rules/gaussians.smk"
include: "workflow/rules/store.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/deformed.smk"
include: "workflow/rules/validation.smk"
include: "workflow/rules/explore.smk"
include: "workflow/rules/states.smk"
include: "workflow/rules/report.smk"


# every rule's shell command quotes the paths it is given (a WorkflowError otherwise)
check_shell_quoting(workflow.rules)


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
