# Head-pose tracking (3DMM-style fit to landmarks) and the camera transforms.


rule tracking:
    input:
        landmarks=manifest("landmarks"),
    output:
        params=data("track_params.pt"),
        preview="results/{subject}/preview/tracking.png",
        manifest=manifest("tracking"),
    params:
        backend=config["tracking"]["backend"],
        bfm_model=config["tracking"]["bfm_model"],
        max_reprojection_px=config["tracking"]["max_reprojection_px"],
        expressions=config["tracking"]["expressions"],
        focal_range=config["tracking"]["focal_range"],
        smooth_weight=config["tracking"]["smooth_weight"],
    conda:
        CONDA_ENV
    log:
        log("tracking"),
    benchmark:
        bench("tracking")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/tracking.py"


rule transforms:
    input:
        params=data("track_params.pt"),
    output:
        train=data("transforms_train.json"),
        val=data("transforms_val.json"),
        manifest=manifest("transforms"),
    conda:
        CONDA_ENV
    log:
        log("transforms"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/transforms.py"
