from pathlib import Path

from ernerf_core.stage_runner import run_from_snakemake
from ernerf_core.train.assemble import assemble_portrait

run_from_snakemake(
    snakemake,
    assemble_portrait,
    subject=snakemake.wildcards.subject,
    data_dir=str(Path(snakemake.input.transforms).parents[1] / "data"),
    head_path=snakemake.input.head,
    torso_path=snakemake.input.torso,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    val_frames=snakemake.params.val_frames,
    device=snakemake.config["train"]["device"],
)
