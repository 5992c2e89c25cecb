from ernerf_core.render.driving import render_audio
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

render = dict(snakemake.params.render)
use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    render_audio,
    subject=snakemake.wildcards.subject,
    model_path=snakemake.input.model,
    features_path=snakemake.input.features,
    wav_path=snakemake.input.wav,
    audio_manifest_path=snakemake.input.audio_manifest,
    video_path=snakemake.output.video,
    smooth_path=render["smooth_path"],
    smooth_window=render["smooth_window"],
    fixed_eye=render["fixed_eye"],
    downscale=render["downscale"],
    device=snakemake.config["train"]["device"],
)
