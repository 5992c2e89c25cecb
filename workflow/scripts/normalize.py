from ernerf_core.preprocess.normalize import normalize
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    normalize,
    subject=snakemake.wildcards.subject,
    video=snakemake.input.video,
    frames_dir=snakemake.output.frames,
    audio_path=snakemake.output.audio,
    manifest_path=snakemake.output.manifest,
    min_seconds=snakemake.config["preprocess"]["min_seconds"],  # a check, not a result param
    **dict(snakemake.params.items()),
)
