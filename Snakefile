# ER-NeRF talking-portrait workflow. Run: snakemake --cores all
# Stages and their files: docs/architecture.md. Config keys: config/README.md.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# Wildcards only ever match configured names (escaped: driving audio names may hold a "."),
# so a typo is a planning error, not a job.
wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    audio="|".join(re.escape(a) for a in DRIVING) if DRIVING else "(?!)",


include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/study.smk"


rule all:
    default_target: True
    input:
        final_targets(),
