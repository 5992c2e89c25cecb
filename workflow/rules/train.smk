# Training: head, lip fine-tuning, torso, and the portrait that joins them. Each training
# stage resumes from its latest checkpoint (results/<subject>/<stage>/checkpoints/) when rerun
# after a kill. The torso needs no head, so it trains beside the head. Training steps are
# thousands of small ops: one thread each (see ernerf_core/train/head.py) lets two stages
# share two cores instead of queueing.


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
    threads: 1
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
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1,
    script:
        "../scripts/finetune_lips.py"


rule train_torso:
    input:
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
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=1,
    script:
        "../scripts/train_torso.py"


rule portrait:
    input:
        head="results/{subject}/lips/model.pt",
        torso="results/{subject}/torso/model.pt",
        transforms=manifest("transforms"),
        audio=manifest("audio_features"),
    output:
        model="results/{subject}/portrait/model.pt",
        manifest=manifest("portrait"),
    params:
        val_frames=config["train"]["torso"]["final_val_frames"],
    conda:
        CONDA_ENV
    log:
        log("portrait"),
    benchmark:
        bench("portrait")
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1,
    script:
        "../scripts/portrait.py"
