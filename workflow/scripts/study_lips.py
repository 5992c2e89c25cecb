from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.train.lips import finetune_lips

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    finetune_lips,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    head_path=snakemake.input.head,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    # this variant's resolved lips settings over the config section (keys that never change the model)
    settings={**snakemake.config["train"]["lips"], **snakemake.params.settings},
    device=snakemake.config["train"]["device"],
)
