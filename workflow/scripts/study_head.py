from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.study.head import train_study_head

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    train_study_head,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    curve_path=snakemake.output.curve,
    error_map_path=snakemake.output.error_map,
    # the params (this variant's resolved settings) over the config section, which adds the
    # keys that never change the model (checkpoint cadence, frame cache)
    settings={**snakemake.config["train"]["head"], **snakemake.params.settings},
    device=snakemake.config["train"]["device"],
)
