# Training: head, lip fine-tuning, torso, and the portrait that joins them. Each training
# stage resumes from its latest checkpoint (results/<subject>/<stage>/checkpoints/) when rerun
# after a kill. The torso needs no head, so it trains beside the head. Training steps are
# thousands of small ops: one thread each (see ernerf_core/train/head.py) lets two stages
# share two cores instead of queueing.


rule train_head:
    input:
        **DATASET_INPUTS,
    output:
        model="results/{subject}/head/model.pt",
        manifest=manifest("train_head"),
    log:
        log("train_head"),
    benchmark:
        bench("train_head")
    conda:
        CONDA_ENV
    threads: rule_threads("train_head")
    resources:
        **rule_resources("train_head"),
    params:
        data_dir=subject_data,
        settings=per_subject(train_settings, "head"),
    script:
        "../scripts/train_head.py"


rule finetune_lips:
    input:
        **DATASET_INPUTS,
        head="results/{subject}/head/model.pt",
    output:
        model="results/{subject}/lips/model.pt",
        manifest=manifest("finetune_lips"),
    log:
        log("finetune_lips"),
    benchmark:
        bench("finetune_lips")
    conda:
        CONDA_ENV
    threads: rule_threads("finetune_lips")
    resources:
        **rule_resources("finetune_lips"),
    params:
        data_dir=subject_data,
        settings=per_subject(train_settings, "lips"),
    script:
        "../scripts/finetune_lips.py"


rule train_torso:
    input:
        **TORSO_INPUTS,
    output:
        model="results/{subject}/torso/model.pt",
        manifest=manifest("train_torso"),
    log:
        log("train_torso"),
    benchmark:
        bench("train_torso")
    conda:
        CONDA_ENV
    threads: rule_threads("train_torso")
    resources:
        **rule_resources("train_torso"),
    params:
        data_dir=subject_data,
        settings=per_subject(train_settings, "torso"),
    script:
        "../scripts/train_torso.py"


rule portrait:
    input:
        **DATASET_INPUTS,
        head="results/{subject}/lips/model.pt",
        torso="results/{subject}/torso/model.pt",
    output:
        model="results/{subject}/portrait/model.pt",
        manifest=manifest("portrait"),
    log:
        log("portrait"),
    benchmark:
        bench("portrait")
    conda:
        CONDA_ENV
    threads: rule_threads("portrait")
    resources:
        **rule_resources("portrait"),
    params:
        data_dir=subject_data,
        val_frames=setting("train", "torso", "final_val_frames"),
    script:
        "../scripts/portrait.py"
