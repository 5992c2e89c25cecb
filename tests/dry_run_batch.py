"""Many Snakemake dry runs in one process: ``python dry_run_batch.py SNAKEFILE SPEC.json``.

SPEC is a JSON list of ``{"id", "workdir", "configfile"}``; prints a JSON object id ->
``{"rc", "jobs" (rule -> count, from the "Job stats" table, without "all"), "nothing"
(the dry run said "Nothing to be done"), "tail" (the end of its output)}``. Each dry run is
`snakemake -s SNAKEFILE --directory WORKDIR --configfile CONFIGFILE -n`, run through
Snakemake's own command line entry point; importing Snakemake once instead of per run saves
a second or more per run (tests/test_staleness.py plans dozens).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count, from the "Job stats" table of a dry run's output (without "total")."""
    table = text.split("Job stats:", 1)[1] if "Job stats:" in text else ""
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def main() -> None:
    from snakemake.cli import main as snakemake_main

    snakefile, spec = sys.argv[1], json.loads(open(sys.argv[2]).read())
    here, results = os.getcwd(), {}
    for run in spec:
        buf, code = io.StringIO(), 0
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                snakemake_main(["-s", snakefile, "--directory", run["workdir"], "--configfile", run["configfile"],
                                "-n"])
            except SystemExit as exit_:
                code = exit_.code or 0
        os.chdir(here)
        text = buf.getvalue()
        jobs = {rule: n for rule, n in job_stats(text).items() if rule != "all"}
        results[run["id"]] = {"rc": code, "jobs": jobs, "nothing": "Nothing to be done" in text, "tail": text[-3000:]}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
