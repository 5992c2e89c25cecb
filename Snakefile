# ER-NeRF talking-portrait workflow. Run: snakemake --cores all
# Stages and their files: docs/architecture.md. Config keys: config/README.md.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# Wildcards only ever match configured names, so a typo is a planning error, not a job.
wildcard_constraints:
    subject="|".join(SUBJECTS),
    audio="|".join(DRIVING) if DRIVING else "(?!)",


include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/render.smk"


rule all:
    default_target: True
    input:
        final_targets(),
