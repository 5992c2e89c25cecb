"""Many subjects: the sample sheet, per-subject overrides, and each rule's resources from config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from conftest import REPO

from ernerf_core import device
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.subjects import SheetError, merge, nest, read_sheet, subject_config, subject_names

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
RESOURCES = SCHEMA["properties"]["resources"]["properties"]
GPU_RULES = {"train_head", "finetune_lips", "train_torso", "portrait", "render_test", "render_audio",
             "study_head", "study_lips", "study_metrics"}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
                           *args], capture_output=True, text=True, env={**os.environ, "ERNERF_NO_PROGRESS": "1"},
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned(proc: subprocess.CompletedProcess) -> list[dict]:
    """The jobs of a dry run: rule, wildcards, threads and resources as Snakemake prints them."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m:
            continue
        job = {"rule": m.group(1)}
        for key in ("wildcards", "threads", "resources"):
            found = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            job[key] = found.group(1) if found else ""
        job["threads"] = job["threads"] or "1"  # Snakemake prints no threads line for one thread
        job["res"] = dict(kv.split("=", 1) for kv in job["resources"].split(", ") if "=" in kv)
        jobs.append(job)
    return jobs


def write(workdir: Path, config: dict, sheet: str | None = None) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    if sheet is not None:
        (workdir / "subjects.tsv").write_text(sheet)


# --- the sheet ------------------------------------------------------------------------------

def test_a_sheet_reads_names_videos_and_typed_overrides(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("# a comment\n\nname\tvideo\tpreprocess.resolution\ttracking.focal_range\ttrain.head.carve\n"
                     "alice\tv/a.mp4\t\t\t\n"
                     "bob\tv/b.mp4\t384\t[600, 1200]\tfalse\n"
                     "# carol\tv/c.mp4\t256\t\t\n"
                     "dave\tv/d.mp4\n")
    rows = read_sheet(sheet)
    assert [r["name"] for r in rows] == ["alice", "bob", "dave"]
    assert rows[0]["overrides"] == {} and rows[2] == {"name": "dave", "video": "v/d.mp4", "overrides": {}}
    assert rows[1]["overrides"] == {"preprocess.resolution": 384, "tracking.focal_range": [600, 1200],
                                    "train.head.carve": False}
    assert nest(rows[1]["overrides"]) == {"preprocess": {"resolution": 384}, "tracking": {"focal_range": [600, 1200]},
                                          "train": {"head": {"carve": False}}}


@pytest.mark.parametrize("text, says", [
    ("video\tname\na.mp4\talice\n", "first columns must be 'name' and 'video'"),
    ("name,video\nalice,a.mp4\n", "first columns must be 'name' and 'video'"),
    ("name\tvideo\nalice\ta.mp4\textra\n", "3 cells for 2 columns"),
    ("name\tvideo\ttrain.seed\ttrain.seed\nalice\ta.mp4\t1\t2\n", "appears twice"),
    ("# only a comment\n", "empty"),
])
def test_a_malformed_sheet_is_refused_with_its_file_and_line(tmp_path, text, says):
    sheet = tmp_path / "bad.tsv"
    sheet.write_text(text)
    with pytest.raises(SheetError, match=re.escape(says)) as err:
        read_sheet(sheet)
    assert "bad.tsv" in str(err.value)
    with pytest.raises(SheetError, match="not found"):
        read_sheet(tmp_path / "missing.tsv")
    with pytest.raises(SheetError, match="inside a value"):
        nest({"train.head": 1, "train.head.iters": 5})


def test_a_subjects_config_is_the_shared_one_with_its_overrides():
    config = {"subjects": {"a": {"video": "a.mp4"}, "b": {"video": "b.mp4", "overrides": {
        "train": {"head": {"iters": 9}}, "tracking": {"focal_range": [1, 2]}}}},
              "train": {"seed": 0, "head": {"iters": 5, "lr": 0.1}}, "tracking": {"focal_range": [600, 3000]}}
    b = subject_config(config, "b")
    assert b["train"] == {"seed": 0, "head": {"iters": 9, "lr": 0.1}} and b["tracking"]["focal_range"] == [1, 2]
    assert subject_config(config, "a")["train"]["head"]["iters"] == 5
    assert config["train"]["head"]["iters"] == 5  # the shared config is left as it was
    assert merge({"x": [1, 2]}, {"x": [3]}) == {"x": [3]}


def test_a_script_reads_its_own_subjects_config():
    class Smk:
        config = {"subjects": {"a": {"video": "a.mp4", "overrides": {"preprocess": {"min_seconds": 9.0}}}},
                  "preprocess": {"min_seconds": 2.0}}
        wildcards = type("W", (), {"subject": "a"})()

    smk = Smk()
    assert use_subject_config(smk)["preprocess"]["min_seconds"] == 9.0
    assert smk.config["preprocess"]["min_seconds"] == 9.0


def test_subject_names_come_from_the_mapping_and_the_sheet(tmp_path):
    (tmp_path / "s.tsv").write_text("name\tvideo\nbob\tb.mp4\n")
    assert subject_names({"subjects": {"alice": {"video": "a.mp4"}}, "subject_sheet": str(tmp_path / "s.tsv")}) \
        == ["alice", "bob"]


# --- resources from config --------------------------------------------------------------------

def test_every_rule_takes_threads_and_resources_from_config():
    """No literal threads (nor workflow.cores) or resources in a rule: resources.<its name>."""
    rules = {}
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", f.read_text(), re.M):
            rules[name] = body
    rules.pop("all", None)
    assert set(rules) == set(RESOURCES), f"rules without resources.<rule> or the reverse: {set(rules) ^ set(RESOURCES)}"
    for name, body in rules.items():
        assert f'    threads: rule_threads("{name}")\n' in body, name
        assert re.search(rf'    resources:\n        \*\*rule_resources\("{name}"\),\n(?!        \w)', body), name
    for name, spec in RESOURCES.items():
        keys = set(spec["properties"])
        assert keys == ({"threads", "mem_mb", "runtime", "gpu"} if name in GPU_RULES else
                        {"threads", "mem_mb", "runtime"}), f"{name}: {keys}"


def test_cpu_only_rules_cannot_be_given_a_gpu():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jsonschema.validate({**config, "resources": {"train_head": {"gpu": 2, "threads": 8}}}, SCHEMA)
    for bad in ({"blink": {"gpu": 1}}, {"normalize": {"threads": 0}}, {"train_head": {"mem": 1}}, {"nope": {}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "resources": bad}, SCHEMA)


def test_the_stage_runner_gives_the_jobs_threads_to_torch_and_openmp(monkeypatch):
    seen = {}

    def stage():
        seen.update(torch=torch.get_num_threads(), omp=os.environ["OMP_NUM_THREADS"], job=device.job_threads())

    class Smk:
        log = []
        threads = 3

    before = torch.get_num_threads()
    monkeypatch.setattr(device, "_JOB_THREADS", None)
    for name in device.THREAD_ENV_VARS:
        monkeypatch.setenv(name, "1")
    try:
        run_from_snakemake(Smk(), stage)
    finally:
        torch.set_num_threads(before)
    assert seen == {"torch": 3, "omp": "3", "job": 3}
    assert all(os.environ[name] == "3" for name in device.THREAD_ENV_VARS)


# --- the workflow ---------------------------------------------------------------------------

def placeholders(workdir: Path, *names: str) -> None:
    for name in names:
        (workdir / name).write_bytes(b"placeholder: planning only")


def test_sheet_and_mapping_subjects_plan_with_their_own_settings_and_resources(tmp_path):
    placeholders(tmp_path, "a.mp4", "b.mp4", "c.mp4", "speech.wav")
    carol = {"video": "c.mp4", "overrides": {"resources": {"render_test": {"threads": 3}}}}
    write(tmp_path, {"subjects": {"carol": carol},
                     "subject_sheet": "subjects.tsv", "driving_audio": {"speech.v1": "speech.wav"},
                     "resources": {"normalize": {"mem_mb": 1234}, "train_head": {"gpu": 0}}},
          "name\tvideo\tresources.train_head.mem_mb\tresources.normalize.threads\n"
          "alice\ta.mp4\t\t\n"
          "bob\tb.mp4\t9000\t1\n")
    jobs = planned(snakemake(tmp_path, "-n", "--cores", "8"))  # a dry run's 1 core would cap the threads shown
    by = {(j["rule"], j["wildcards"]): j for j in jobs}
    assert {w for (r, w) in by if r == "normalize"} == {"subject=alice", "subject=bob", "subject=carol"}
    assert by[("train_head", "subject=bob")]["res"]["mem_mb"] == "9000"
    assert by[("train_head", "subject=alice")]["res"]["mem_mb"] == "6000"
    assert by[("normalize", "subject=alice")]["res"]["mem_mb"] == "1234"
    assert (by[("normalize", "subject=alice")]["threads"], by[("normalize", "subject=bob")]["threads"]) == ("2", "1")
    assert by[("render_test", "subject=carol")]["threads"] == "3"
    for job in jobs:
        if job["rule"] == "all":
            continue
        assert job["res"].get("gpu") == ({"render_test": "1", "render_audio": "1", "portrait": "1",
                                          "finetune_lips": "1", "train_torso": "1", "train_head": "0"}
                                         .get(job["rule"])), job
        assert job["res"]["runtime"] == str(RESOURCES[job["rule"]]["properties"]["runtime"]["default"]), job


@pytest.mark.parametrize("sheet, says", [
    ("name\tvideo\ttrain.head.iter\nalice\ta.mp4\t5\n", "subject 'alice': its overrides"),
    ("name\tvideo\tpreprocess.resolution\nalice\ta.mp4\thuge\n", "'huge' is not of type 'integer'"),
    ("name\tvideo\taudio.backend\nalice\ta.mp4\thubert\n", "'audio.backend' does not match"),
    ("name\tvideo\nalice\ta.mp4\nalice\tb.mp4\n", "subject 'alice' is twice in subjects.tsv"),
    ("name\tvideo\n../x\ta.mp4\n", "'../x' does not match"),
])
def test_a_bad_sheet_stops_the_run_before_any_job(tmp_path, sheet, says):
    placeholders(tmp_path, "a.mp4", "b.mp4")
    write(tmp_path, {"subjects": {}, "subject_sheet": "subjects.tsv"}, sheet)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert says in proc.stdout + proc.stderr


def test_no_subjects_at_all_is_refused(tmp_path):
    write(tmp_path, {"subjects": {}})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "no subjects" in proc.stdout + proc.stderr


def test_wildcards_match_configured_names_only_dots_included(tmp_path):
    """Escaped constraints: driving audio `v1.2` does not make `v1x2` a target."""
    placeholders(tmp_path, "a.mp4", "speech.wav")
    write(tmp_path, {"subjects": {"alice": {"video": "a.mp4"}}, "driving_audio": {"v1.2": "speech.wav"}})
    assert snakemake(tmp_path, "-n", "results/alice/render/audio/v1.2.mp4").returncode == 0
    proc = snakemake(tmp_path, "-n", "results/alice/render/audio/v1x2.mp4", check=False)
    assert proc.returncode != 0 and "MissingRuleException" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_adding_or_changing_another_subject_leaves_a_subjects_outputs_alone(tmp_path):
    config = {"subjects": {}, "subject_sheet": "subjects.tsv", "driving_audio": {},
              "demo": {"size": 128, "seconds": 2.5, "seed": 0}, "preprocess": {"resolution": 96}}
    write(tmp_path, config, "name\tvideo\nalice\tresources/demo/demo.mp4\n")
    target = "results/alice/manifests/normalize.json"
    snakemake(tmp_path, "--cores", "2", target)
    write(tmp_path, config, "name\tvideo\tpreprocess.resolution\tresources.normalize.mem_mb\n"
                            "alice\tresources/demo/demo.mp4\t\t\n"
                            "bob\tresources/demo/demo.mp4\t64\t5000\n")
    again = snakemake(tmp_path, "-n", target, "results/bob/manifests/normalize.json")
    assert [(j["rule"], j["wildcards"]) for j in planned(again)] == [("normalize", "subject=bob")]
    # the subject's own override is a param of its jobs: changing it reruns that subject only
    write(tmp_path, config, "name\tvideo\tpreprocess.resolution\nalice\tresources/demo/demo.mp4\t80\n")
    assert [(j["rule"], j["wildcards"]) for j in planned(snakemake(tmp_path, "-n", target))] == \
        [("normalize", "subject=alice")]


def test_the_run_summary_lists_the_sheets_subjects_too(tmp_path):
    from ernerf_core.summary import summarize

    (tmp_path / "s.tsv").write_text("name\tvideo\nbob\tb.mp4\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"subjects": {"alice": {"video": "a.mp4"}},
                                                          "subject_sheet": str(tmp_path / "s.tsv")}))
    text = summarize(tmp_path / "config.yaml", tmp_path / "results")
    assert "subject alice" in text and "subject bob" in text
