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
    threads: rule_threads("demo_subject")
    resources:
        **rule_resources("demo_subject"),
    params:
        size=config["demo"]["size"],
        seconds=config["demo"]["seconds"],
        seed=config["demo"]["seed"],
    script:
        "../scripts/demo_subject.py"
