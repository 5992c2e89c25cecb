from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.study.metrics import measure_study_run

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    measure_study_run,
    subject=snakemake.wildcards.subject,
    variant=snakemake.wildcards.variant,
    seed=int(snakemake.wildcards.seed),
    data_dir=snakemake.params.data_dir,
    model_path=snakemake.input.model,
    manifests=list(snakemake.input.manifests),
    metrics_path=snakemake.output.metrics,
    downscale=snakemake.params.downscale,
    eval_frames=snakemake.params.eval_frames,
    device=snakemake.config["train"]["device"],
)
