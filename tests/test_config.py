"""The config schema, the default config and config/README.md agree."""

from __future__ import annotations

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
