# Head-pose tracking (3DMM-style fit to landmarks) and the camera transforms.


rule tracking:
    input:
        frames=data("ori_imgs"),
        normalize=manifest("normalize"),
        dense=data("landmarks.npy"),
        bfm_model=per_subject(backend_file, "tracking", "bfm", "bfm_model"),
    output:
        params=data("track_params.pt"),
        preview="results/{subject}/preview/tracking.png",
        manifest=manifest("tracking"),
    log:
        log("tracking"),
    benchmark:
        bench("tracking")
    conda:
        CONDA_ENV
    threads: rule_threads("tracking")
    resources:
        **rule_resources("tracking"),
    # max_reprojection_px only accepts or refuses the fit, so it is not a param; the script
    # reads it from the config.
    params:
        data_dir=subject_data,
        backend=setting("tracking", "backend"),
        bfm_model=per_subject(backend_param, "tracking", ["bfm"], "bfm_model"),
        expressions=setting("tracking", "expressions"),
        focal_range=setting("tracking", "focal_range"),
        smooth_weight=setting("tracking", "smooth_weight"),
    script:
        "../scripts/tracking.py"


rule transforms:
    input:
        params=data("track_params.pt"),
    output:
        train=data("transforms_train.json"),
        val=data("transforms_val.json"),
        manifest=manifest("transforms"),
    log:
        log("transforms"),
    conda:
        CONDA_ENV
    threads: rule_threads("transforms")
    resources:
        **rule_resources("transforms"),
    script:
        "../scripts/transforms.py"
