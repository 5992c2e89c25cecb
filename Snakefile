# ER-NeRF talking-portrait workflow. Run: snakemake --cores all
# Stages and their files: docs/architecture.md. Config keys: config/README.md.

configfile: "config/config.yaml"


# One environment for every rule with `--sdm conda` (same pins as requirements.txt).
conda: "envs/ernerf.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/render.smk"


rule all:
    input:
        final_targets(),
    default_target: True
