# The built-in demo subject: a talking head rendered offline from a bundled photo.


rule demo_subject:
    output:
        video="resources/demo/demo.mp4",
        truth="resources/demo/demo_truth.npz",
        drive="resources/demo/drive.wav",
        manifest="resources/demo/demo.json",
    params:
        size=config["demo"]["size"],
        seconds=config["demo"]["seconds"],
        seed=config["demo"]["seed"],
    conda:
        CONDA_ENV
    log:
        "logs/demo_subject.log",
    benchmark:
        "resources/demo/benchmark.tsv"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    script:
        "../scripts/demo_subject.py"
