# Rendering: the validation split with metrics, and any driving audio.


rule render_test:
    input:
        model="results/{subject}/portrait/model.pt",
        transforms=manifest("transforms"),
        audio=manifest("audio_features"),
    output:
        video="results/{subject}/render/test.mp4",
        side_by_side="results/{subject}/render/test_side_by_side.mp4",
        sheet="results/{subject}/render/contact_sheet.png",
        metrics="results/{subject}/render/metrics.json",
    params:
        downscale=config["render"]["downscale"],
    conda:
        CONDA_ENV
    log:
        log("render_test"),
    benchmark:
        bench("render_test")
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=1,
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
    params:
        render=config.get("render", {}),
    conda:
        CONDA_ENV
    log:
        "logs/{subject}/render_audio_{audio}.log",
    benchmark:
        "results/{subject}/benchmarks/render_audio_{audio}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=1,
    script:
        "../scripts/render_audio.py"
