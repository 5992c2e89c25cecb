# Video normalisation and face preprocessing: frames, audio, landmarks, parsing,
# background, torso/gt images, blink, preview.


rule normalize:
    input:
        video=subject_video,
    output:
        frames=directory(data("ori_imgs")),
        audio=data("aud.wav"),
        manifest=manifest("normalize"),
    log:
        log("normalize"),
    benchmark:
        bench("normalize")
    conda:
        CONDA_ENV
    threads: rule_threads("normalize")
    resources:
        **rule_resources("normalize"),
    # min_seconds only accepts or refuses a video, so it is not a param (changing it must not
    # rerun normalize and everything after it); the script reads it from the config.
    params:
        resolution=setting("preprocess", "resolution"),
        crop_scale=setting("preprocess", "crop_scale"),
    script:
        "../scripts/normalize.py"


rule landmarks:
    input:
        frames=data("ori_imgs"),
        normalize=manifest("normalize"),
    output:
        dense=data("landmarks.npy"),
        lms=directory(data("lms")),
        manifest=manifest("landmarks"),
    log:
        log("landmarks"),
    benchmark:
        bench("landmarks")
    conda:
        CONDA_ENV
    threads: rule_threads("landmarks")
    resources:
        **rule_resources("landmarks"),
    # max_missing_share / max_gap_frames only accept or refuse the frames (gaps are always
    # interpolated), so they are not params; the script reads them from the config.
    params:
        data_dir=subject_data,
        backend=setting("landmarks", "backend"),
    script:
        "../scripts/landmarks.py"


rule parsing:
    input:
        frames=data("ori_imgs"),
        dense=data("landmarks.npy"),
        weights=per_subject(backend_file, "parsing", "bisenet", "bisenet_weights"),
    output:
        parsing=directory(data("parsing")),
        manifest=manifest("parsing"),
    log:
        log("parsing"),
    benchmark:
        bench("parsing")
    conda:
        CONDA_ENV
    threads: rule_threads("parsing")
    resources:
        **rule_resources("parsing"),
    params:
        data_dir=subject_data,
        backend=setting("parsing", "backend"),
        bisenet_weights=per_subject(
            backend_param, "parsing", ["bisenet"], "bisenet_weights"
        ),
    script:
        "../scripts/parsing.py"


rule background:
    input:
        frames=data("ori_imgs"),
        parsing=data("parsing"),
    output:
        bc=data("bc.jpg"),
        manifest=manifest("background"),
    log:
        log("background"),
    benchmark:
        bench("background")
    conda:
        CONDA_ENV
    threads: rule_threads("background")
    resources:
        **rule_resources("background"),
    params:
        data_dir=subject_data,
    script:
        "../scripts/background.py"


rule torso_gt:
    input:
        frames=data("ori_imgs"),
        parsing=data("parsing"),
        bc=data("bc.jpg"),
    output:
        gt=directory(data("gt_imgs")),
        torso=directory(data("torso_imgs")),
        manifest=manifest("torso_gt"),
    log:
        log("torso_gt"),
    benchmark:
        bench("torso_gt")
    conda:
        CONDA_ENV
    threads: rule_threads("torso_gt")
    resources:
        **rule_resources("torso_gt"),
    params:
        data_dir=subject_data,
    script:
        "../scripts/torso_gt.py"


rule blink:
    input:
        frames=data("ori_imgs"),
        normalize=manifest("normalize"),
        dense=data("landmarks.npy"),
        landmarks=manifest("landmarks"),
        openface_csv=per_subject(backend_file, "blink", "openface", "openface_csv"),
    output:
        au=data("au.csv"),
        manifest=manifest("blink"),
    log:
        log("blink"),
    benchmark:
        bench("blink")
    conda:
        CONDA_ENV
    threads: rule_threads("blink")
    resources:
        **rule_resources("blink"),
    params:
        data_dir=subject_data,
        backend=setting("blink", "backend"),
        openface_csv=per_subject(backend_param, "blink", ["openface"], "openface_csv"),
    script:
        "../scripts/blink.py"


rule preview:
    input:
        frames=data("ori_imgs"),
        dense=data("landmarks.npy"),
        lms=data("lms"),
        parsing=data("parsing"),
    output:
        sheet="results/{subject}/preview/contact_sheet.png",
    log:
        log("preview"),
    benchmark:
        bench("preview")
    conda:
        CONDA_ENV
    threads: rule_threads("preview")
    resources:
        **rule_resources("preview"),
    params:
        data_dir=subject_data,
    script:
        "../scripts/preview.py"
