from ernerf_core.preprocess.landmarks import detect_landmarks
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    detect_landmarks,
    subject=snakemake.wildcards.subject,
    dense_path=snakemake.output.dense,
    lms_dir=snakemake.output.lms,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
