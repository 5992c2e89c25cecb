"""Imports run one way: stages above metrics, model and media, helpers at the bottom.

Walks every module of ``ernerf_core`` (function-level imports included, since a lazy import
is still a dependency) and checks each import against the layer order below, which
docs/architecture.md shows; a package that imports a package that imports it back fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ernerf_core

PACKAGE_DIR = Path(ernerf_core.__file__).parent

# lower number = lower layer; a module may import its own unit or any lower layer
LAYERS = {
    "errors": 0, "fsio": 0, "progress": 0, "device": 0, "memory": 0, "stage_runner": 0, "subjects": 0,
    "media": 1,
    "model": 2,
    "metrics": 3,
    "audio": 4, "preprocess": 4, "demo": 4,
    "train": 5,
    "render": 6,
    "cli": 7, "summary": 7, "study": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the ernerf_core modules a file imports, at any depth of its code."""
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ernerf_core")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("ernerf_core"):
                found.add(module)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ernerf_core"


def import_edges() -> set[tuple[str, str]]:
    """(importing unit, imported unit) over the whole package, self-edges dropped."""
    edges = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        src = _unit(_module_name(path))
        for module in _imported_modules(path):
            dst = _unit(module)
            if dst != src and dst != "ernerf_core":
                edges.add((src, dst))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE_DIR.rglob("*.py")} - {"ernerf_core"}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS (and to docs/architecture.md)"


def test_imports_run_one_way():
    def allowed(a: str, b: str) -> bool:  # strictly downward; helpers may use each other
        return LAYERS[a] > LAYERS[b] or LAYERS[a] == LAYERS[b] == 0

    upward = sorted((a, b) for a, b in import_edges() if not allowed(a, b))
    assert not upward, f"imports against the layer order (importer, imported): {upward}"


def test_no_package_imports_back():
    edges = import_edges()
    back = sorted((a, b) for a, b in edges if (b, a) in edges)
    assert not back, f"packages that import each other: {back}"


def test_detects_a_function_level_back_import(tmp_path):
    """The walker sees lazy imports inside functions (today's three back-imports were all lazy)."""
    mod = tmp_path / "ernerf_core" / "metrics" / "x.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("def f():\n    from ..train.perceptual import load_lpips\n")
    global PACKAGE_DIR
    saved, PACKAGE_DIR = PACKAGE_DIR, tmp_path / "ernerf_core"
    try:
        assert _imported_modules(mod) == {"ernerf_core.train.perceptual"}
    finally:
        PACKAGE_DIR = saved
