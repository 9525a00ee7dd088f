# The README's two commands: `make demo` and `make test`. Each creates what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TRAINER := .venv-trainer
PIP_FLAGS := --quiet --disable-pip-version-check --no-input

.PHONY: demo test lint bench clean venv trainer envs

# sweepctl's own environment: the package (editable) with its full and dev extras, pinned.
# An editable install gets no bytecode from pip: where PYTHONDONTWRITEBYTECODE is set (this
# machine, many CI and container images) every `sweepctl validate` of the pre-commit hook
# would compile the package's source again (~45 ms of ~215 ms), so it is compiled here.
$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c requirements/constraints.txt -e '.[full,dev]'
	$(BIN)/python -m compileall -q tools/sweepctl
	touch $@

venv: $(BIN)/.installed

# The trainer's environment (LLaMA-Factory on CPU torch), separate from sweepctl's own.
$(TRAINER)/.installed: requirements/trainer.txt demo/install_trainer.sh
	bash demo/install_trainer.sh $(PYTHON) $(TRAINER) requirements/trainer.txt
	touch $@

trainer: $(TRAINER)/.installed

# the two environments install side by side (each mostly waits on downloads and unpacking)
envs:
	$(MAKE) --no-print-directory -j2 venv trainer

test: envs
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(BIN)/.installed
	$(BIN)/ruff check tools tests bench scripts demo
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: envs
	bash demo/run_demo.sh

bench: $(BIN)/.installed
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/launch.py
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) $(TRAINER) .sweepctl build *.egg-info
