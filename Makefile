# Two commands for users: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-cluster bench lint rulegraph clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores all
	$(BIN)/python -m ernerf_core.summary
	@# do the videos play in a browser? (optional: needs Chromium, e.g. apt install chromium)
	@if $(BIN)/python -c "from ernerf_core.render.browser_check import find_chromium as f; raise SystemExit(f() is None)"; \
	then $(BIN)/ernerf browser-check results/*/render/*.mp4 results/*/render/audio/*.mp4 \
	       --screenshot results/browser_check.png; \
	else echo "browser check skipped: no Chromium on this machine"; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The workflow through a real one-node SLURM (tests/cluster/): as root it installs and starts
# slurm-wlm, slurmdbd, MariaDB and munge; elsewhere it skips with the one line saying why.
test-cluster: $(STAMP)
	@bash tests/cluster/setup_slurm.sh; rc=$$?; \
	if [ $$rc -eq 3 ]; then exit 0; elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	ERNERF_CLUSTER_TEST=1 $(BIN)/python -m pytest -q -s tests/cluster

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Developer regression on a real face (long; not in make test or make bench): the 71 s clip of
# ../shared/media with the standard CPU schedule in results_real/; prints PSNR, SSIM, mouth LMD,
# mouth correlation with its interval, the audio-swap figure and the wall time.
# VIDEO=../shared/media/talking_face_5s.mp4 NAME=face5s for the quick check.
VIDEO ?= ../shared/media/talking_face_cnn_71s.mp4
NAME ?= real_clip
regress-real: $(STAMP)
	$(BIN)/python -m benchmarks.real_clip --video $(VIDEO) --name $(NAME)

# The Snakemake community's checks (lint, snakefmt) and ruff; CI runs this before the tests.
lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile .test/config.yaml
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/ruff check .

rulegraph: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg  # dot: Debian package graphviz

clean:
	rm -rf results logs resources/demo .snakemake
