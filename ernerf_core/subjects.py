"""Subjects and their own settings: the sample sheet, and the config each subject's jobs see.

A subject comes from the config mapping (``subjects: {name: {video, overrides}}``) or from a
row of the sample sheet (``subject_sheet``, a TSV: ``name``, ``video``, then any columns
named by a dotted config key, e.g. ``train.head.iters``). A subject's overrides replace those
keys of the config for that subject's jobs only; other subjects and shared jobs (driving
audio features, the demo) see the config as it is. The workflow (workflow/rules/common.smk)
and every subject's script (``stage_runner.use_subject_config``) apply them the same way.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import yaml

# Config sections a subject may override. The others are shared by all subjects: the subject
# list itself, driving audio and its features (audio.*: one feature file per driving audio
# serves every subject), the demo clip and the refinement study.
OVERRIDABLE = ("preprocess", "landmarks", "parsing", "blink", "tracking", "train", "render", "model", "resources")
SHEET_FIXED = ("name", "video")


class SheetError(ValueError):
    """A sample sheet that cannot be read as one (the message names the file and line)."""


def parse_cell(text: str) -> Any:
    """A sheet cell as a config value: YAML, so `256`, `0.5`, `true`, `null`, `[600, 3000]` and
    plain words read as they would in config.yaml."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def nest(dotted: dict[str, Any]) -> dict:
    """``{"train.head.iters": 5}`` -> ``{"train": {"head": {"iters": 5}}}``."""
    out: dict = {}
    for key, value in dotted.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SheetError(f"column {key!r} sets a key inside a value set by another column")
        node[last] = value
    return out


def read_sheet(path: str | Path) -> list[dict]:
    """The rows of a sample sheet, as ``{"name", "video", "overrides": {...dotted: value}}``,
    in file order. Lines starting with ``#`` and blank lines are skipped; an empty cell sets
    nothing (the config's value stands)."""
    path = Path(path)
    if not path.is_file():
        raise SheetError(f"sample sheet {path} not found (config key subject_sheet)")
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SheetError(f"sample sheet {path} is empty: it needs a header line (name, video, ...)")
    reader = csv.reader(lines, delimiter="\t")
    header = [h.strip() for h in next(reader)]
    if header[:2] != list(SHEET_FIXED):
        raise SheetError(f"sample sheet {path}: the first columns must be 'name' and 'video' "
                         f"(tab-separated), found {header[:2]}")
    if len(set(header)) != len(header):
        raise SheetError(f"sample sheet {path}: a column name appears twice in {header}")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) > len(header):
            raise SheetError(f"sample sheet {path}, row {number}: {len(cells)} cells for {len(header)} columns "
                             "(are the cells separated by tabs?)")
        cells = [c.strip() for c in cells] + [""] * (len(header) - len(cells))
        overrides = {key: parse_cell(cell) for key, cell in zip(header[2:], cells[2:], strict=True) if cell != ""}
        rows.append({"name": cells[0], "video": cells[1], "overrides": overrides})
    return rows


def merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` (nested) replacing its keys, mappings merged key
    by key and any other value replaced whole."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def subject_config(config: dict, subject: str) -> dict:
    """The config one subject's jobs see: ``config`` with the subject's overrides applied."""
    return merge(config, config["subjects"][subject].get("overrides") or {})


def subject_names(config: dict) -> list[str]:
    """Every subject of a config file as the workflow sees it (mapping and sample sheet)."""
    names = set(config.get("subjects") or {})
    if config.get("subject_sheet"):
        names |= {row["name"] for row in read_sheet(config["subject_sheet"])}
    return sorted(names)
