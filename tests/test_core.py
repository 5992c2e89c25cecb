"""Shared stage machinery: atomic outputs, one-line errors, the stage runner."""

from __future__ import annotations

import pytest

from ernerf_core.errors import StageError
from ernerf_core.fsio import atomic_dir, atomic_file, read_json, write_manifest
from ernerf_core.stage_runner import run_stage


def test_atomic_file_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_keeps_suffix_and_replaces(tmp_path):
    target = tmp_path / "a.npy"
    target.write_text("old")
    with atomic_file(target) as tmp:
        assert tmp.suffix == ".npy" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_whole_directory_or_nothing(tmp_path):
    target = tmp_path / "frames"
    with atomic_dir(target) as tmp:
        (tmp / "0.jpg").write_text("a")
    assert sorted(p.name for p in target.iterdir()) == ["0.jpg"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "1.jpg").write_text("b")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["0.jpg"]
    with atomic_dir(target) as tmp:
        (tmp / "2.jpg").write_text("c")
    assert sorted(p.name for p in target.iterdir()) == ["2.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_stage_error_is_one_line_naming_subject_stage_and_remedy():
    err = StageError("alice", "normalize", "the file has\nno audio track.", "Add an audio track.")
    text = str(err)
    assert "\n" not in text
    assert text.startswith("[alice] normalize:") and "no audio track" in text and "Add an audio" in text


def test_run_stage_turns_stage_error_into_exit_1_and_one_log_line(tmp_path, capsys):
    def failing_stage():
        raise StageError("bob", "landmarks", "no face in frames 3-9", "check the video")

    log = tmp_path / "stage.log"
    with pytest.raises(SystemExit) as exit_info:
        run_stage(failing_stage, log_path=str(log))
    assert exit_info.value.code == 1
    assert "ERROR [bob] landmarks: no face in frames 3-9. check the video." in capsys.readouterr().err
    assert "no face in frames 3-9" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_manifest_records_stage_subject_and_params(tmp_path):
    write_manifest(tmp_path / "m.json", stage="normalize", subject="s", params={"resolution": 64}, frames=10)
    data = read_json(tmp_path / "m.json")
    assert data["stage"] == "normalize" and data["subject"] == "s"
    assert data["params"] == {"resolution": 64} and data["frames"] == 10


def test_every_stage_module_registers_a_subcommand():
    from ernerf_core.cli import STAGE_MODULES, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    assert len(commands) >= len(STAGE_MODULES)
    for name in ["demo", "normalize", "landmarks", "tracking", "audio-features", "train-head",
                 "finetune-lips", "train-torso", "render-test", "render"]:
        assert name in commands, name


def test_peak_memory_is_never_below_the_current(monkeypatch):
    """ru_maxrss can lag /proc/self/statm (approximate kernel counters): the peak still covers now."""
    import resource

    from ernerf_core import memory

    now = memory.current_rss_mb()
    assert now and now > 1
    monkeypatch.setattr(resource, "getrusage", lambda who: type("R", (), {"ru_maxrss": 1})())
    assert memory.peak_rss_mb() >= now * 0.99
