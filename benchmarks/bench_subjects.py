"""Two subjects in one `snakemake --cores all` run against the same two one after the other.

Both subjects are the tiny `.test/config.yaml` pipeline (every stage, a 2.5 s clip at 96 px,
dozens of training steps) on the same demo clip, bob with another training seed, both listed
in a sample sheet. Measured side by side in one process, in fresh working folders that
share only the demo clip (made once beforehand, not timed):
- sequential: `snakemake --cores all results/alice/...` to the end, then the same for bob;
- together: one `snakemake --cores all` for both (timed between alice's and bob's runs).
Each job has the threads config gives its rule (resources.<rule>.threads), so the run
together can only fill cores the one-subject runs leave idle: a stage of one subject beside
another subject's stage, the per-job start-up (Python, torch, the stage's imports) of one
overlapping the other's work. Ratio = sequential wall time / together wall time (> 1: the
run together is faster). `python -m benchmarks bench_subjects`; about 8 minutes on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SUBJECTS = ("alice", "bob")
SHEET = "name\tvideo\ttrain.seed\nalice\tresources/demo/demo.mp4\t\nbob\tresources/demo/demo.mp4\t1\n"


def _targets(subject: str) -> list[str]:
    return [f"results/{subject}/{t}" for t in ("preview/contact_sheet.png", "preview/tracking.png",
                                               "render/test.mp4", "render/metrics.json",
                                               "render/audio/drive.mp4")]


def _snakemake(workdir: Path, *args: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "all", "--quiet", "all"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ERNERF_NO_PROGRESS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def _workdir(root: Path, name: str, config: dict, demo: Path) -> Path:
    workdir = root / name
    (workdir / "resources").mkdir(parents=True)
    shutil.copytree(demo, workdir / "resources" / "demo")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "subjects.tsv").write_text(SHEET)
    return workdir


def run() -> list[dict]:
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config.update(subjects={}, subject_sheet="subjects.tsv")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seed = root / "seed"
        seed.mkdir()
        (seed / "config.yaml").write_text(yaml.safe_dump(config))
        (seed / "subjects.tsv").write_text(SHEET)
        _snakemake(seed, "resources/demo/demo.mp4")  # the shared input, not timed
        demo = seed / "resources" / "demo"

        sequential_dir = _workdir(root, "sequential", config, demo)
        together_dir = _workdir(root, "together", config, demo)
        # the driving audio's features are shared by the subjects: made before timing, on both sides
        for d in (sequential_dir, together_dir):
            _snakemake(d, "results/driving/drive/audio_features.json")
        # interleaved, so that a change in the machine's load during the run falls on both sides
        first = _snakemake(sequential_dir, *_targets(SUBJECTS[0]))
        together = _snakemake(together_dir)
        sequential = first + _snakemake(sequential_dir, *_targets(SUBJECTS[1]))
    cores = os.cpu_count()
    return [{"measure": f"2 tiny subjects, snakemake --cores all ({cores} cores)", "unit": "s",
             "value": round(together, 1), "baseline": "the 2 subjects one after the other",
             "baseline_value": round(sequential, 1), "ratio": round(sequential / together, 3)}]
