# The refinement study (target `study`): each variant of config `study.variants` (overrides
# of train.head, and of train.lips where the key exists there; `grids` on all three planes)
# trains `study.seeds` heads on the same subject folder, step budget and val split, under
# results/<subject>/study/<variant>/seed<n>/; the `study` rule tables and plots them
# (results/<subject>/study/table.md, ...). A job's params carry only its own variant's
# resolved settings, so editing one variant reruns that variant alone (and the table).
# Report: snakemake study --report study.html (captions in workflow/report/).


include: "study_common.smk"


wildcard_constraints:
    variant="|".join(STUDY_VARIANTS),
    seed=r"\d+",


rule study_head:
    input:
        **DATASET_INPUTS,
    output:
        model=study_run("head/model.pt"),
        manifest=study_run("head/manifest.json"),
        curve=study_run("head/curve.csv"),
        error_map=study_run("head/error_map.npz"),
    log:
        "logs/{subject}/study/{variant}_seed{seed}_head.log",
    conda:
        CONDA_ENV
    threads: rule_threads("study_head")
    resources:
        **rule_resources("study_head"),
    params:
        data_dir=subject_data,
        settings=study_head_settings,
    script:
        "../scripts/study_head.py"


rule study_lips:
    input:
        **DATASET_INPUTS,
        head=study_run("head/model.pt"),
    output:
        model=study_run("lips/model.pt"),
        manifest=study_run("lips/manifest.json"),
    log:
        "logs/{subject}/study/{variant}_seed{seed}_lips.log",
    conda:
        CONDA_ENV
    threads: rule_threads("study_lips")
    resources:
        **rule_resources("study_lips"),
    params:
        data_dir=subject_data,
        settings=study_lips_settings,
    script:
        "../scripts/study_lips.py"


rule study_metrics:
    input:
        **DATASET_INPUTS,
        wav=data("aud.wav"),
        model=study_run(f"{STUDY_STAGES[-1]}/model.pt"),
        manifests=[study_run(f"{stage}/manifest.json") for stage in STUDY_STAGES],
    output:
        metrics=study_run("metrics.json"),
    log:
        "logs/{subject}/study/{variant}_seed{seed}_metrics.log",
    conda:
        CONDA_ENV
    threads: rule_threads("study_metrics")
    resources:
        **rule_resources("study_metrics"),
    params:
        data_dir=subject_data,
        downscale=STUDY["downscale"] or config["render"]["downscale"],
        eval_frames=STUDY["eval_frames"],
    script:
        "../scripts/study_metrics.py"


rule study:
    input:
        metrics=study_files("metrics.json"),
        curves=study_files("head/curve.csv"),
        error_maps=study_error_map_files(),
    output:
        csv=study_outputs("table.csv"),
        md=study_outputs("table.md"),
        html=study_report("table.html", "study_table.rst"),
        curves=study_report("learning_curves.png", "study_learning_curves.rst"),
        bars=study_report("bars", "study_bars.rst", folder=True),
        error_maps=study_report("error_maps", "study_error_maps.rst", folder=True),
    log:
        "logs/study.log",
    conda:
        CONDA_ENV
    threads: rule_threads("study")
    resources:
        **rule_resources("study"),
    params:
        subjects=SUBJECTS,
        layout=study_layout(),
    script:
        "../scripts/study.py"
