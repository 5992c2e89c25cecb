# Helpers of the study's rules (study.smk): the variants, seeds and budget from config
# `study`, and each run's resolved training settings. Kept apart from the rules, as
# `snakemake --lint` asks.

import copy

STUDY = config["study"]
STUDY_VARIANTS = list(STUDY["variants"])
STUDY_SEEDS = [config["train"]["seed"] + k for k in range(STUDY["seeds"])]
STUDY_ITERS = STUDY["iters"] or config["train"]["head"]["iters"]
STUDY_LIPS_ITERS = (
    config["train"]["lips"]["iters"]
    if STUDY["lips_iters"] is None
    else STUDY["lips_iters"]
)
# null lips steps: the preset's, in each run
STUDY_STAGES = (
    ["head", "lips"] if STUDY_LIPS_ITERS is None or STUDY_LIPS_ITERS > 0 else ["head"]
)
STUDY_SHARED_KEYS = ("loss", "huber_delta")
if STUDY["baseline"] is not None and STUDY["baseline"] not in STUDY["variants"]:
    raise ValueError(
        f"study.baseline {STUDY['baseline']!r} is not one of study.variants ({', '.join(STUDY_VARIANTS)})"
    )


def study_run(path):
    """A file of one study run (wildcards subject, variant, seed)."""
    return f"results/{{subject}}/study/{{variant}}/seed{{seed}}/{path}"


def study_settings(variant, seed, stage):
    """The resolved training settings of one run's stage ("head" or "lips"): the pipeline's
    train_settings(stage), the study's budget, the variant's overrides (each key where the
    stage has it), the seed."""
    s = copy.deepcopy(train_settings(stage))
    section = config["train"][stage]
    if stage == "head":
        # null steps or rays: the preset's, resolved in the run (the same for every run of a
        # subject); the run validates every iters / curve_points steps
        s.update(iters=STUDY_ITERS, num_rays=STUDY["num_rays"] or section["num_rays"])
        s.update(curve_points=STUDY["curve_points"], val_frames=STUDY["curve_frames"])
    else:
        s.update(iters=STUDY_LIPS_ITERS, val_every=0)
    s["final_val_frames"] = 1  # the study_metrics stage measures the val split
    for key, value in STUDY["variants"][variant].items():
        if key == "grids":
            model = s.setdefault("model", copy.deepcopy(config["model"]))
            for plane in model["grids"].values():
                plane.update(value)
        elif key in STUDY_SHARED_KEYS or key in section:
            s[key] = value
    s["seed"] = int(seed)
    return s


def study_head_settings(wildcards):
    return study_settings(wildcards.variant, wildcards.seed, "head")


def study_lips_settings(wildcards):
    return study_settings(wildcards.variant, wildcards.seed, "lips")


def study_error_map_variants():
    """The variants whose head draws rays from the error map."""
    default = config["train"]["head"]["error_map"]
    return [v for v in STUDY_VARIANTS if STUDY["variants"][v].get("error_map", default)]


def study_path(subject, variant, seed, path):
    return f"results/{subject}/study/{variant}/seed{seed}/{path}"


def study_files(path):
    return [
        study_path(s, v, n, path)
        for s in SUBJECTS
        for v in STUDY_VARIANTS
        for n in STUDY_SEEDS
    ]


def study_error_map_files():
    seed = STUDY_SEEDS[0]
    return [
        study_path(s, v, seed, "head/error_map.npz")
        for s in SUBJECTS
        for v in study_error_map_variants()
    ]


def study_layout():
    """Per subject, what the `study` job reads (variant -> seed -> files), the overrides, the
    baseline, and the error maps (first seed of each error-map variant)."""
    layout = {}
    for s in SUBJECTS:
        runs = {
            v: {
                str(n): {
                    "metrics": study_path(s, v, n, "metrics.json"),
                    "curve": study_path(s, v, n, "head/curve.csv"),
                }
                for n in STUDY_SEEDS
            }
            for v in STUDY_VARIANTS
        }
        maps = {
            v: study_path(s, v, STUDY_SEEDS[0], "head/error_map.npz")
            for v in study_error_map_variants()
        }
        layout[s] = {
            "runs": runs,
            "variants": STUDY["variants"],
            "baseline": STUDY["baseline"],
            "error_maps": maps,
        }
    return layout


def study_outputs(name):
    return [f"results/{s}/study/{name}" for s in SUBJECTS]


def study_report(name, caption, folder=False):
    """The subjects' study files `name`, marked for `snakemake --report` with `caption`
    (`folder`: a directory of PNGs)."""
    marked = []
    for s, f in zip(SUBJECTS, study_outputs(name)):
        kind = dict(patterns=["{name}.png"]) if folder else {}
        path = directory(f) if folder else f
        where = dict(caption=f"../report/{caption}", category="Study", subcategory=s)
        marked.append(report(path, **kind, **where))
    return marked
