from ernerf_core.stage_runner import run_from_snakemake
from ernerf_core.train.head import train_head

run_from_snakemake(
    snakemake,
    train_head,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    settings=dict(snakemake.params.settings),
    device=snakemake.config["train"]["device"],
)
