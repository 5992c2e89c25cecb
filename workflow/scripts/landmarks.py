from ernerf_core.preprocess.landmarks import detect_landmarks
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    detect_landmarks,
    subject=snakemake.wildcards.subject,
    dense_path=snakemake.output.dense,
    lms_dir=snakemake.output.lms,
    manifest_path=snakemake.output.manifest,
    # checks, not result params
    max_missing_share=snakemake.config["landmarks"]["max_missing_share"],
    max_gap_frames=snakemake.config["landmarks"]["max_gap_frames"],
    **dict(snakemake.params.items()),
)
