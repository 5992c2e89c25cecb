"""Performance harness: `make bench` runs every `bench_*.py` module here.

Each module exposes ``run() -> list[dict]``; every row names what was measured, the
baseline it is compared with (run in the same process), and the ratio.
"""
