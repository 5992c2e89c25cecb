# Rendering: the validation split with metrics, and any driving audio.


rule render_test:
    input:
        **DATASET_INPUTS,
        model="results/{subject}/portrait/model.pt",
        wav=data("aud.wav"),
    output:
        video="results/{subject}/render/test.mp4",
        side_by_side="results/{subject}/render/test_side_by_side.mp4",
        sheet="results/{subject}/render/contact_sheet.png",
        metrics="results/{subject}/render/metrics.json",
    log:
        log("render_test"),
    benchmark:
        bench("render_test")
    conda:
        CONDA_ENV
    threads: rule_threads("render_test")
    resources:
        **rule_resources("render_test"),
    params:
        data_dir=subject_data,
        downscale=setting("render", "downscale"),
        syncnet_weights=setting("render", "syncnet_weights"),
    script:
        "../scripts/render_test.py"


rule render_audio:
    input:
        model="results/{subject}/portrait/model.pt",
        features=driving_features(),
        wav="results/driving/{audio}/aud.wav",
        audio_manifest="results/driving/{audio}/audio_features.json",
    output:
        video="results/{subject}/render/audio/{audio}.mp4",
    log:
        "logs/{subject}/render_audio_{audio}.log",
    benchmark:
        "results/{subject}/benchmarks/render_audio_{audio}.tsv"
    conda:
        CONDA_ENV
    threads: rule_threads("render_audio")
    resources:
        **rule_resources("render_audio"),
    params:
        render=render_audio_settings,
    script:
        "../scripts/render_audio.py"
