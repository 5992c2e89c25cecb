from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.train.portrait import assemble_portrait

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    assemble_portrait,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    head_path=snakemake.input.head,
    torso_path=snakemake.input.torso,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    val_frames=snakemake.params.val_frames,
    device=snakemake.config["train"]["device"],
)
