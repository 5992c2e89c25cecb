from ernerf_core.render.test_split import render_test
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    render_test,
    subject=snakemake.wildcards.subject,
    model_path=snakemake.input.model,
    data_dir=snakemake.params.data_dir,
    video_path=snakemake.output.video,
    side_by_side_path=snakemake.output.side_by_side,
    sheet_path=snakemake.output.sheet,
    metrics_path=snakemake.output.metrics,
    downscale=snakemake.params.downscale,
    syncnet_weights=snakemake.params.syncnet_weights,
    device=snakemake.config["train"]["device"],
)
