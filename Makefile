# carla_rl: the two commands are `make train` and `make test`; both bootstrap first (idempotent).
SHELL := /bin/bash
ACTIVATE := . .venv/bin/activate && . install/setup.bash
ARGS ?=
TRAIN_ARGS ?= --parallel-envs 2 --save-dir runs/latest

.PHONY: bootstrap train test test-fast bench clean help

help:
	@echo "make train   - bootstrap if needed, then train on the embedded simulator (ARGS='--device cuda ...')"
	@echo "make test    - bootstrap if needed, then run the whole test suite"
	@echo "make bench   - run the benchmarks and print JSON"
	@echo "make clean   - remove build/ install/ log/ (keeps .venv)"

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
