# Video normalisation and face preprocessing: frames, audio, landmarks, parsing,
# background, torso/gt images, blink, preview.


rule normalize:
    input:
        video=subject_video,
    output:
        frames=directory(data("ori_imgs")),
        audio=data("aud.wav"),
        manifest=manifest("normalize"),
    # min_seconds only accepts or refuses a video, so it is not a param (changing it must not
    # rerun normalize and everything after it); the script reads it from the config.
    params:
        resolution=config["preprocess"]["resolution"],
        crop_scale=config["preprocess"]["crop_scale"],
    conda:
        CONDA_ENV
    log:
        log("normalize"),
    benchmark:
        bench("normalize")
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/normalize.py"


rule landmarks:
    input:
        normalize=manifest("normalize"),
    output:
        dense=data("landmarks.npy"),
        manifest=manifest("landmarks"),
    params:
        backend=config["landmarks"]["backend"],
        max_missing_share=config["landmarks"]["max_missing_share"],
        max_gap_frames=config["landmarks"]["max_gap_frames"],
    conda:
        CONDA_ENV
    log:
        log("landmarks"),
    benchmark:
        bench("landmarks")
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
    script:
        "../scripts/landmarks.py"


rule parsing:
    input:
        normalize=manifest("normalize"),
        landmarks=manifest("landmarks"),
    output:
        parsing=directory(data("parsing")),
        manifest=manifest("parsing"),
    params:
        backend=config["parsing"]["backend"],
        bisenet_weights=config["parsing"]["bisenet_weights"],
    conda:
        CONDA_ENV
    log:
        log("parsing"),
    benchmark:
        bench("parsing")
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
    script:
        "../scripts/parsing.py"


rule background:
    input:
        parsing=manifest("parsing"),
    output:
        bc=data("bc.jpg"),
        manifest=manifest("background"),
    conda:
        CONDA_ENV
    log:
        log("background"),
    benchmark:
        bench("background")
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    script:
        "../scripts/background.py"


rule torso_gt:
    input:
        parsing=manifest("parsing"),
        bc=data("bc.jpg"),
    output:
        gt=directory(data("gt_imgs")),
        torso=directory(data("torso_imgs")),
        manifest=manifest("torso_gt"),
    conda:
        CONDA_ENV
    log:
        log("torso_gt"),
    benchmark:
        bench("torso_gt")
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
    script:
        "../scripts/torso_gt.py"


rule blink:
    input:
        landmarks=manifest("landmarks"),
    output:
        au=data("au.csv"),
        manifest=manifest("blink"),
    params:
        backend=config["blink"]["backend"],
        openface_csv=config["blink"]["openface_csv"],
    conda:
        CONDA_ENV
    log:
        log("blink"),
    benchmark:
        bench("blink")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/blink.py"


rule preview:
    input:
        landmarks=manifest("landmarks"),
        parsing=manifest("parsing"),
    output:
        sheet="results/{subject}/preview/contact_sheet.png",
    conda:
        CONDA_ENV
    log:
        log("preview"),
    benchmark:
        bench("preview")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/preview.py"
