"""Run every benchmark module (or those named on the command line) and print one table."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    rows = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        for row in module.run():
            rows.append({"benchmark": name, **row})
            print(json.dumps(rows[-1]), flush=True)
    out = here / "out"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{len(rows)} measurements -> {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
