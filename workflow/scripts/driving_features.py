from ernerf_core.audio.features import extract_features
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    extract_features,
    subject=f"driving:{snakemake.wildcards.audio}",
    audio=snakemake.input.audio,
    features_path=snakemake.output.features,
    manifest_path=snakemake.output.manifest,
    wav_path=snakemake.output.wav,
    **dict(snakemake.params.items()),
)
