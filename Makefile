# carla_rl: the two commands are `make train` and `make test`; both bootstrap first (idempotent).
SHELL := /bin/bash
ACTIVATE := . .venv/bin/activate && . install/setup.bash
ARGS ?=
TRAIN_ARGS ?= --parallel-envs 2 --save-dir runs/latest

.PHONY: bootstrap train test test-fast bench clean help bundle bundle-gpu

help:
	@echo "make train   - bootstrap if needed, then train on the embedded simulator (ARGS='--device cuda ...')"
	@echo "make test    - bootstrap if needed, then run the whole test suite"
	@echo "make bench   - run the benchmarks and print JSON"
	@echo "make clean   - remove build/ install/ log/ (keeps .venv)"
	@echo "make bundle  - offline bundle for another machine (PYTHON=python3.12; BUNDLE_SKIP, BUNDLE_ARGS: docs/GPU.md)"
	@echo "make bundle-gpu - the same for the GPU benchmark machine: leaves out what it has (scripts/bundle-present-gpu.txt)"

bootstrap:
	@bash scripts/bootstrap.sh

train: bootstrap
	@$(ACTIVATE) && carla-rl train $(TRAIN_ARGS) $(ARGS)

test: bootstrap
	@$(ACTIVATE) && bash scripts/run_tests.sh $(ARGS)

bench: bootstrap
	@$(ACTIVATE) && carla-rl bench sim --phase 10 --seconds 5 --json && \
	  carla-rl bench learner --device cpu --seconds 10 --json && \
	  carla-rl bench graph --envs 2 --seconds 20 --json

clean:
	rm -rf build install log

# Offline bundle (docs/GPU.md): dist/bundle-cpXY/ for the Python named by PYTHON (default python3.12).
# PYTHON, BUNDLE_SKIP, BUNDLE_WITHOUT, BUNDLE_OUT, BUNDLE_MAX_MIB given on the command line reach the script.
bundle:
	@bash scripts/bundle.sh $(BUNDLE_ARGS)

bundle-gpu:
	@bash scripts/bundle.sh --skip-present scripts/bundle-present-gpu.txt --without carla,pygame --max-mib 48 $(BUNDLE_ARGS)
