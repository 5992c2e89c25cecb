# The built-in demo subject: a talking head rendered offline from a bundled photo.


rule demo_subject:
    output:
        video="resources/demo/demo.mp4",
        truth="resources/demo/demo_truth.npz",
        drive="resources/demo/drive.wav",
        manifest="resources/demo/demo.json",
    log:
        "logs/demo_subject.log",
    benchmark:
        "resources/demo/benchmark.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        size=config["demo"]["size"],
        seconds=config["demo"]["seconds"],
        seed=config["demo"]["seed"],
    script:
        "../scripts/demo_subject.py"
