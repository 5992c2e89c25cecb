"""The config schema, the default config and config/README.md agree."""

from __future__ import annotations

import os

import jsonschema
import yaml
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def schema_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted names of every fixed key in the schema (maps like subjects.<name> excluded)."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        if sub.get("type") == "object" and "properties" in sub:
            keys += schema_keys(sub, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def test_every_schema_key_is_documented():
    readme = (REPO / "config/README.md").read_text()
    missing = [k for k in schema_keys(SCHEMA) if f"`{k}`" not in readme and not k.startswith("subjects")]
    assert not missing, f"config/README.md does not document: {missing}"


def test_default_config_validates_and_every_default_is_applied():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    jsonschema.validate(config, SCHEMA)
    assert set(config) <= set(SCHEMA["properties"])


def test_schema_rejects_unknown_keys_and_bad_values():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for bad in ({**config, "unknown": 1}, {**config, "preprocess": {"resolution": "big"}},
                {**config, "subjects": {"1bad name": {"video": "x.mp4"}}}):
        try:
            jsonschema.validate(bad, SCHEMA)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"schema accepted {bad}")


def schema_defaults(node: dict) -> dict:
    """The defaults the schema fills into an object, nested objects included."""
    out = {}
    for name, sub in node["properties"].items():
        out[name] = schema_defaults(sub) if sub.get("type") == "object" and "properties" in sub else sub["default"]
    return out


def test_training_defaults_in_the_code_are_the_schemas():
    """train.head/lips/torso: the stage code's defaults dicts (used by the CLI and when a key is
    missing) and the schema (what Snakemake fills) give every key the same value, except the
    schedule keys: null in the schema (the preset's), the preview preset's in the code."""
    from ernerf_core.train.head import HEAD_DEFAULTS, LIPS_DEFAULTS
    from ernerf_core.train.schedule import PREVIEW, SCHEDULE_KEYS
    from ernerf_core.train.torso import TORSO_DEFAULTS

    train = SCHEMA["properties"]["train"]
    assert train["properties"]["preset"]["default"] == "auto"
    for section, stage, defaults in (("head", "train_head", HEAD_DEFAULTS), ("lips", "finetune_lips", LIPS_DEFAULTS),
                                     ("torso", "train_torso", TORSO_DEFAULTS)):
        schema = schema_defaults(train["properties"][section])
        assert {k for k, v in schema.items() if v is None} == set(SCHEDULE_KEYS[stage]), section
        assert {k: defaults[k] for k in SCHEDULE_KEYS[stage]} == PREVIEW[stage], section
        assert schema == {**defaults, **dict.fromkeys(SCHEDULE_KEYS[stage])}, section


def test_conda_env_is_self_contained_and_pins_what_requirements_pins():
    """Snakemake copies envs/ernerf.yaml before building the env, so it may name no path
    (no `-r ../requirements.txt`, no `-e ..`); its pip list is requirements.txt's."""
    env = yaml.safe_load((REPO / "envs/ernerf.yaml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert pip == [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    from packaging.requirements import Requirement

    for entry in pip:  # each a plain requirement: no option, path or URL
        assert not entry.startswith("-") and "/" not in entry and ".." not in entry, entry
        Requirement(entry)


def test_jobs_import_ernerf_core_from_the_checkout_without_an_installed_package(tmp_path):
    """A --sdm conda env does not install ernerf_core: jobs find it through the PYTHONPATH that
    common.smk sets. `python -S` drops site-packages (the venv's editable install) to show it."""
    import subprocess
    import sys

    (tmp_path / "Snakefile").write_text(
        f'include: "{REPO}/workflow/rules/common.smk"\n\n'
        "rule probe:\n    output:\n        \"probe.txt\",\n    shell:\n"
        f"        \"{sys.executable} -S -c 'import ernerf_core; print(ernerf_core.__file__)' > {{output}}\"\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"subjects": {"x": {"video": "x.mp4"}}}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1",
                           "probe.txt"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "probe.txt").read_text().strip() == str(REPO / "ernerf_core" / "__init__.py")
