"""Stage preview: the contact sheet, and the face stages' command-line entry points."""

from __future__ import annotations

import cv2
import pytest

from ernerf_core.cli import build_parser, main
from ernerf_core.errors import StageError
from ernerf_core.preprocess.preview import SHOWN_FRAMES, TILE, make_preview


def test_contact_sheet_shows_landmarks_and_parsing(face_subject, tmp_path):
    sheet_path = tmp_path / "preview" / "contact_sheet.png"
    make_preview(subject="demo", data_dir=face_subject, sheet_path=sheet_path)
    sheet = cv2.imread(str(sheet_path))[..., ::-1]  # RGB
    rows = SHOWN_FRAMES // 2
    assert sheet.shape == (rows * TILE + 24, 4 * TILE, 3)
    first_landmarks, first_parsing = sheet[:TILE, :TILE], sheet[:TILE, TILE : 2 * TILE]
    yellow = (
        (first_landmarks[..., 0] > 200) & (first_landmarks[..., 1] > 180) & (first_landmarks[..., 2] < 80)
    )
    assert yellow.sum() > 200  # the 68-point contours
    blue = (first_parsing[..., 2] > first_parsing[..., 0] + 60) & (
        first_parsing[..., 2] > first_parsing[..., 1] + 60
    )
    green = (first_parsing[..., 1] > first_parsing[..., 0] + 60) & (
        first_parsing[..., 1] > first_parsing[..., 2] + 60
    )
    assert blue.mean() > 0.05 and green.mean() > 0.005  # head and neck tints


def test_preview_needs_parsing(face_subject, tmp_path):
    data = tmp_path / "data"
    for name in ("ori_imgs/0.jpg", "lms/0.lms"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes((face_subject / name).read_bytes())
    with pytest.raises(StageError, match="run the parsing stage first"):
        make_preview(subject="t", data_dir=data, sheet_path=tmp_path / "sheet.png")
    assert not (tmp_path / "sheet.png").exists()


def test_face_stages_are_cli_subcommands(face_subject, tmp_path):
    commands = build_parser()._subparsers._group_actions[0].choices
    for stage in ("landmarks", "parsing", "background", "torso_gt", "blink", "preview"):
        assert stage in commands
    au = tmp_path / "au.csv"
    assert (
        main(
            [
                "blink",
                "--subject",
                "demo",
                "--data-dir",
                str(face_subject),
                "--au",
                str(au),
                "--manifest",
                str(tmp_path / "blink.json"),
            ]
        )
        == 0
    )
    assert au.read_text() == (face_subject / "au.csv").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["preview", "--subject", "demo", "--data-dir", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 1
