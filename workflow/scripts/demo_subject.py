from ernerf_core.demo import make_demo_subject
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    make_demo_subject,
    video_path=snakemake.output.video,
    truth_path=snakemake.output.truth,
    drive_path=snakemake.output.drive,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
