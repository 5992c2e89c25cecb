# Training: head, lip fine-tuning, torso. Each resumes from its latest checkpoint
# (results/<subject>/<stage>/checkpoints/) when rerun after a kill.


rule train_head:
    input:
        normalize=manifest("normalize"),
        landmarks=manifest("landmarks"),
        torso_gt=manifest("torso_gt"),
        blink=manifest("blink"),
        transforms=manifest("transforms"),
        audio=manifest("audio_features"),
    output:
        model="results/{subject}/head/model.pt",
        manifest=manifest("train_head"),
    params:
        settings=train_settings("head"),
    conda:
        CONDA_ENV
    log:
        log("train_head"),
    benchmark:
        bench("train_head")
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=1,
    script:
        "../scripts/train_head.py"


rule finetune_lips:
    input:
        head="results/{subject}/head/model.pt",
        transforms=manifest("transforms"),
        audio=manifest("audio_features"),
    output:
        model="results/{subject}/lips/model.pt",
        manifest=manifest("finetune_lips"),
    params:
        settings=train_settings("lips"),
    conda:
        CONDA_ENV
    log:
        log("finetune_lips"),
    benchmark:
        bench("finetune_lips")
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1,
    script:
        "../scripts/finetune_lips.py"


rule train_torso:
    input:
        head="results/{subject}/lips/model.pt",
        transforms=manifest("transforms"),
        torso_gt=manifest("torso_gt"),
        audio=manifest("audio_features"),
    output:
        model="results/{subject}/torso/model.pt",
        manifest=manifest("train_torso"),
    params:
        settings=train_settings("torso"),
    conda:
        CONDA_ENV
    log:
        log("train_torso"),
    benchmark:
        bench("train_torso")
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=1,
    script:
        "../scripts/train_torso.py"
