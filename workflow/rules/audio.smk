# Audio features: for the subject's own audio (training) and for each driving audio.


rule audio_features:
    input:
        audio=data("aud.wav"),
    output:
        features=data(audio_feature_file()),
        manifest=manifest("audio_features"),
    log:
        log("audio_features"),
    benchmark:
        bench("audio_features")
    conda:
        CONDA_ENV
    threads: rule_threads("audio_features")
    resources:
        **rule_resources("audio_features"),
    params:
        backend=config["audio"]["backend"],
        checkpoint=backend_param("audio", AUDIO_WEIGHTS_BACKENDS, "checkpoint"),
        noise_floor_dbfs=config["audio"]["noise_floor_dbfs"],
    script:
        "../scripts/audio_features.py"


rule driving_features:
    input:
        audio=driving_audio_file,
    output:
        wav="results/driving/{audio}/aud.wav",
        features=driving_features(),
        manifest="results/driving/{audio}/audio_features.json",
    log:
        "logs/driving/{audio}.log",
    benchmark:
        "results/driving/{audio}/benchmark.tsv"
    conda:
        CONDA_ENV
    threads: rule_threads("driving_features")
    resources:
        **rule_resources("driving_features"),
    params:
        backend=config["audio"]["backend"],
        checkpoint=backend_param("audio", AUDIO_WEIGHTS_BACKENDS, "checkpoint"),
        noise_floor_dbfs=config["audio"]["noise_floor_dbfs"],
    script:
        "../scripts/driving_features.py"
