"""The workflow as a user drives it: planning, caching, rerunning exactly what went stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from dry_run_batch import job_stats

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERNERF_NO_PROGRESS": "1"}
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile",
                           str(workdir / "config.yaml"), *args],
                          capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count, from the 'Job stats' table of a dry run."""
    return job_stats(proc.stdout + proc.stderr)


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def test_default_config_is_valid_and_plans_every_stage(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    for rule in ["demo_subject", "normalize", "landmarks", "parsing", "background", "torso_gt",
                 "blink", "tracking", "transforms", "audio_features", "driving_features",
                 "train_head", "finetune_lips", "train_torso", "portrait", "render_test", "render_audio"]:
        assert jobs.get(rule) == 1, f"{rule} not planned once: {jobs}"


def test_two_subjects_are_both_planned(tmp_path):
    for name in ("alice", "bob"):
        (tmp_path / f"{name}.mp4").write_bytes(b"placeholder: planning only")
    (tmp_path / "speech.wav").write_bytes(b"placeholder: planning only")
    write_config(tmp_path, {"subjects": {"alice": {"video": "alice.mp4"}, "bob": {"video": "bob.mp4"}},
                            "driving_audio": {"speech": "speech.wav"}})
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    assert jobs["normalize"] == 2 and jobs["train_head"] == 2 and jobs["render_audio"] == 2
    assert jobs["driving_features"] == 1  # driving audio features are shared by subjects
    assert "demo_subject" not in jobs


def test_bad_subject_name_is_rejected_at_start(tmp_path):
    write_config(tmp_path, {"subjects": {"../etc": {"video": "x.mp4"}}})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "../etc" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_second_run_does_nothing_and_resolution_change_reruns_only_downstream(tmp_path):
    config = {
        "subjects": {"demo": {"video": "resources/demo/demo.mp4"}},
        "driving_audio": {},
        "demo": {"size": 128, "seconds": 2.5, "seed": 0},
        "preprocess": {"resolution": 96},
    }
    write_config(tmp_path, config)
    targets = ["results/demo/manifests/normalize.json", "results/demo/manifests/audio_features.json"]
    snakemake(tmp_path, "--cores", "2", *targets)
    assert (tmp_path / "results/demo/data/ori_imgs/0.jpg").exists()

    again = snakemake(tmp_path, "-n", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr

    config["preprocess"]["resolution"] = 112
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n", *targets))
    assert jobs == {"normalize": 1, "audio_features": 1}, jobs


RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def workflow_rules() -> list[str]:
    return [m.group(1) for f in RULE_FILES for m in re.finditer(r"^rule (\w+):", f.read_text(), re.M)]


def test_every_rule_finds_its_code_in_one_hop():
    """rule R -> workflow/scripts/R.py -> one ernerf_core module whose name says the stage."""
    scripts = {p.stem for p in (REPO / "workflow" / "scripts").glob("*.py")}
    rules = workflow_rules()
    assert scripts == set(rules), f"scripts without a rule or rules without a script: {scripts ^ set(rules)}"
    for f in RULE_FILES:
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", f.read_text(), re.M):
            assert f'"../scripts/{name}.py"' in body, f"rule {name} does not run scripts/{name}.py"
    for rule in rules:
        text = (REPO / "workflow" / "scripts" / f"{rule}.py").read_text()
        modules = [m for m in re.findall(r"^from (ernerf_core\S*) import", text, re.M)
                   if m != "ernerf_core.stage_runner"]
        assert len(modules) == 1, f"scripts/{rule}.py should call one stage module, imports {modules}"
        words = set(re.split(r"[._]", modules[0])) - {"ernerf", "core"}
        assert words & set(rule.split("_")), f"{modules[0]} does not say the stage {rule}"


def declared_outputs() -> list[tuple[str, str]]:
    """(rule, path pattern) for every output of every rule, data()/manifest() spelled out."""
    outputs = []
    for f in RULE_FILES:
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", f.read_text(), re.M):
            block = re.search(r"^    output:\n((?:        .*\n)*)", body, re.M)
            for kind, arg, literal in re.findall(r'(data|manifest)\("([^"]+)"\)|"([^"]+)"', block.group(1)):
                path = {"data": f"results/{{subject}}/data/{arg}",
                        "manifest": f"results/{{subject}}/manifests/{arg}.json"}.get(kind, literal)
                outputs.append((name, path))
    return outputs


def test_no_rule_writes_into_another_rules_output():
    """A folder output (directory()) holds its own rule's files only (the .lms once sat in ori_imgs/)."""
    outputs = declared_outputs()
    assert ("landmarks", "results/{subject}/data/lms") in outputs
    for rule, folder in outputs:
        inside = [(r, p) for r, p in outputs if r != rule and p.startswith(folder + "/")]
        assert not inside, f"{inside} write into {rule}'s output folder {folder}"
