"""The workflow on a real SLURM: `make test-cluster` (root; it installs packages).

tests/cluster/setup_slurm.sh starts a one-node cluster here (slurmctld, slurmd, slurmdbd on
MariaDB, munge; two stand-in GPUs). Two subjects from a sample sheet, the tiny schedules of
.test/config.yaml, run twice: locally (`--cores 2`) and through
`snakemake --profile profiles/slurm --profile tests/cluster/profile` (the overlay names the
test cluster's partition and account). The demo clip is made first with profiles/slurm alone,
as shipped. Then: every job is in sacct, completed, with the CPUs, memory, time limit and
GPUs its rule's resources.<rule> asked for (bob's own train_head memory included); the
results equal the local run's; and a third subject added to the sheet plans only its jobs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

SETUP = REPO / "tests" / "cluster" / "setup_slurm.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
PARTITION = ACCOUNT = "ernerf-test"
# threads no job may exceed: the test node's CPUs (a job asking for more is never scheduled)
MAX_THREADS = 2
SHEET = (
    "name\tvideo\ttrain.seed\tresources.train_head.mem_mb\n"
    "alice\tresources/demo/demo.mp4\t\t\n"
    "bob\tresources/demo/demo.mp4\t1\t1800\n"  # bob: another seed, and more memory for train_head
)
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
RULE_RESOURCES = {rule: {k: v["default"] for k, v in spec["properties"].items()}
                  for rule, spec in SCHEMA["properties"]["resources"]["properties"].items()}
# what the outputs' comparison leaves out: timings, rates and clock times, never results
VOLATILE_KEYS = re.compile(r"seconds|_s$|fps|written_at|elapsed", re.I)
# a training run's id ends with its start time (seconds since the epoch)
RUN_ID = re.compile(r"^(\w+-[0-9a-f]+-\d+)-\d{9,}$")


def cluster_config() -> dict:
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["subjects"] = {}
    config["subject_sheet"] = "subjects.tsv"
    # the focal found by the search, fixed: the search is most of the tiny pipeline's time
    config.setdefault("tracking", {})["focal_range"] = [1230, 1230]
    config["resources"] = {rule: {"threads": min(r["threads"], MAX_THREADS), "mem_mb": 1000, "runtime": 10}
                           for rule, r in RULE_RESOURCES.items()}
    return config


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERNERF_NO_PROGRESS": "1"}
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
                           *args], capture_output=True, text=True, env=env, timeout=1500)
    (workdir / f"snakemake_{len(list(workdir.glob('snakemake_*.log')))}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    return proc


def run_ids(proc: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def cluster():
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    gres = subprocess.run(["scontrol", "show", "node"], capture_output=True, text=True).stdout
    return {"gpus": "gpu:" in gres.split("Gres=", 1)[-1].split()[0]}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    config = cluster_config()
    dirs = {}
    for name in ("local", "slurm"):
        d = dirs[name] = root / name
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        (d / "subjects.tsv").write_text(SHEET)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    relax = []
    if not cluster["gpus"]:
        # a node without (stand-in) GPUs: the GPU requests relaxed on the command line, test only
        relax = ["--set-resources", *[f"{r}:gpu=0" for r, v in RULE_RESOURCES.items() if "gpu" in v]]
    t0 = time.monotonic()

    def through_slurm():
        # the demo clip with profiles/slurm as shipped, then everything with the test overlay
        shipped = snakemake(dirs["slurm"], "--profile", str(REPO / "profiles" / "slurm"), *relax,
                            "resources/demo/demo.mp4")
        overlay = snakemake(dirs["slurm"], "--profile", str(REPO / "profiles" / "slurm"),
                            "--profile", str(REPO / "tests" / "cluster" / "profile"), *relax)
        return shipped, overlay, time.monotonic() - t0

    # The local run beside the SLURM runs: it fills the cores while SLURM jobs wait for their
    # turn (status checks, job start-up). Their outputs do not depend on it: each job has its
    # rule's fixed threads and seeds.
    with ThreadPoolExecutor(2) as pool:
        slurm_runs = pool.submit(through_slurm)
        snakemake(dirs["local"], "--cores", "2")
        local_s = time.monotonic() - t0
        shipped, overlay, slurm_s = slurm_runs.result()
    ids = run_ids(shipped) + run_ids(overlay)
    assert len(ids) == 2, "no 'SLURM run ID' in the snakemake output: did the slurm executor run?"
    fields = ["JobID", "JobName", "State", "ExitCode", "Partition", "Account", "Timelimit", "ReqTRES", "Comment"]
    out = subprocess.run(["sacct", "-X", "-P", "-S", started, "--name", ",".join(ids), "-o", ",".join(fields)],
                         capture_output=True, text=True, check=True).stdout
    jobs = list(csv.DictReader(io.StringIO(out), delimiter="|"))
    print(f"\ncluster test: local run {local_s:.0f} s, SLURM runs {slurm_s:.0f} s, {len(jobs)} SLURM jobs: "
          + ", ".join(f"{s} {sum(j['State'] == s for j in jobs)}" for s in sorted({j["State"] for j in jobs})))
    default_account = subprocess.run(["sacctmgr", "-n", "-P", "show", "user", "root", "format=defaultaccount"],
                                     capture_output=True, text=True).stdout.strip()
    return {"dirs": dirs, "jobs": jobs, "config": config, "ids": ids, "relaxed": bool(relax),
            "shipped_id": run_ids(shipped)[0], "default_account": default_account}


def expected_jobs() -> set[tuple[str, str]]:
    """(rule, wildcards) of every job of the two runs, as the plugin writes them in the comment."""
    per_subject = ["normalize", "landmarks", "parsing", "background", "torso_gt", "blink", "preview", "tracking",
                   "transforms", "audio_features", "train_head", "finetune_lips", "train_torso", "portrait",
                   "render_test"]
    jobs = {("demo_subject", ""), ("driving_features", "drive")}
    for s in ("alice", "bob"):
        jobs |= {(r, s) for r in per_subject} | {("render_audio", f"{s}.drive")}
    return jobs


def comment_job(comment: str) -> tuple[str, str]:
    m = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(.+))?", comment)
    assert m, f"unexpected job comment {comment!r}"
    rule = next(r for r in sorted(RULE_RESOURCES, key=len, reverse=True) if m.group(1) == r)
    return rule, (m.group(2) or "").replace("_", ".")


def test_every_job_ran_through_slurm_and_completed(runs):
    jobs = runs["jobs"]
    seen = [comment_job(j["Comment"]) for j in jobs]
    assert sorted(seen) == sorted(expected_jobs()), f"sacct lists {sorted(seen)}"
    bad = [(j["JobID"], j["Comment"], j["State"], j["ExitCode"]) for j in jobs
           if j["State"] != "COMPLETED" or j["ExitCode"] != "0:0"]
    assert not bad, bad


def test_each_job_asked_slurm_for_its_rules_configured_resources(runs):
    config = runs["config"]
    for job in runs["jobs"]:
        rule, wildcards = comment_job(job["Comment"])
        subject = wildcards.split(".")[0] if rule not in ("demo_subject", "driving_features") else None
        res = dict(config["resources"][rule])
        if subject == "bob" and rule == "train_head":
            res["mem_mb"] = 1800  # the sample sheet's per-subject column
        tres = dict(item.split("=", 1) for item in job["ReqTRES"].split(","))
        assert tres["cpu"] == str(res["threads"]), (rule, wildcards, job["ReqTRES"])
        assert tres["mem"] == f"{res['mem_mb']}M", (rule, wildcards, job["ReqTRES"])
        gpus = RULE_RESOURCES[rule].get("gpu", 0) if not runs["relaxed"] else 0
        assert tres.get("gres/gpu") == (str(gpus) if gpus else None), (rule, wildcards, job["ReqTRES"])
        assert job["Timelimit"] == f"00:{res['runtime']:02d}:00", (rule, job["Timelimit"])
        if job["JobName"] == runs["shipped_id"]:
            # profiles/slurm as shipped names neither: the cluster's default partition and the
            # user's default account
            assert (job["Partition"], job["Account"]) == (PARTITION, runs["default_account"]), job
        else:  # the overlay's
            assert (job["Partition"], job["Account"]) == (PARTITION, ACCOUNT), job


def comparable(value):
    """A manifest, metrics or model-meta value without its timings (NaN equal to NaN)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not VOLATILE_KEYS.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, str) and RUN_ID.match(value):
        return RUN_ID.match(value).group(1)
    if hasattr(value, "shape"):
        return ("array", tuple(value.shape), np.asarray(value).tobytes())
    return value


def comparable_csv(text: str) -> list[dict]:
    return [comparable(row) for row in csv.DictReader(io.StringIO(text))]


def test_results_equal_the_local_runs(runs):
    local, slurm = runs["dirs"]["local"] / "results", runs["dirs"]["slurm"] / "results"
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file()
                   and "benchmarks" not in p.parts and "checkpoints" not in p.parts and p.name != "benchmark.tsv")
    assert len(files) > 100, files
    missing = [f for f in files if not (slurm / f).is_file()]
    assert not missing, missing
    differ = []
    for f in files:
        a, b = local / f, slurm / f
        if f.suffix == ".json":
            if comparable(json.loads(a.read_text())) != comparable(json.loads(b.read_text())):
                differ.append(str(f))
        elif f.suffix == ".csv" and f.name == "train_log.csv":  # steps, losses, PSNR; and elapsed times
            if comparable_csv(a.read_text()) != comparable_csv(b.read_text()):
                differ.append(str(f))
        elif f.suffix == ".pt":  # weights, and the meta of the run
            import torch

            if comparable(torch.load(a, map_location="cpu", weights_only=True)) != \
                    comparable(torch.load(b, map_location="cpu", weights_only=True)):
                differ.append(str(f))
        elif a.read_bytes() != b.read_bytes():
            differ.append(str(f))
    assert not differ, f"results differ from the local run's: {differ}"
    # the two subjects really are two (bob trained with another seed)
    alice, bob = (json.loads((slurm / s / "render" / "metrics.json").read_text())["psnr"] for s in ("alice", "bob"))
    assert alice != bob


def test_adding_a_subject_to_the_sheet_plans_only_its_jobs(runs):
    work = runs["dirs"]["local"]
    shutil.copy(work / "subjects.tsv", work / "subjects.tsv.orig")
    try:
        with (work / "subjects.tsv").open("a") as sheet:
            sheet.write("carol\tresources/demo/demo.mp4\t2\t\n")
        proc = snakemake(work, "-n")
        text = proc.stdout + proc.stderr
        planned = re.findall(r"wildcards: (\S+)", text)
        assert planned and all("carol" in w for w in planned), planned
        assert "subject=alice" not in text and "subject=bob" not in text
    finally:
        shutil.move(work / "subjects.tsv.orig", work / "subjects.tsv")
