from ernerf_core.preprocess.tracking import track_head_pose
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    track_head_pose,
    subject=snakemake.wildcards.subject,
    params_path=snakemake.output.params,
    preview_path=snakemake.output.preview,
    manifest_path=snakemake.output.manifest,
    max_reprojection_px=snakemake.config["tracking"]["max_reprojection_px"],  # a check, not a result param
    **dict(snakemake.params.items()),
)
