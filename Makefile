# Two commands do all the set-up: `make run` (demo against the embedded server) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCKS := requirements.lock requirements-test.lock
UPGRADE_VENV ?= .venv-upgrade

.PHONY: run test lint venv clean upgrade-check

# Installs exactly the locked versions (what CI tests); `python deploy/lock.py` rewrites the locks.
$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(addprefix -c ,$(LOCKS)) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/enx-bot run configs/demo.yaml

test: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/mypy --strict bot
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench

# Not in CI: the newest versions pyproject allows, in a scratch venv, against the fast-path canary
# (tests/webrtc). Green means the ranges can move; then rewrite the locks and run `make test`.
upgrade-check:
	rm -rf $(UPGRADE_VENV)
	$(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/pip install --quiet --upgrade pip
	$(UPGRADE_VENV)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(UPGRADE_VENV)/bin/pip list --format=freeze | grep -iE '^(aiortc|aioice|av|pylibsrtp)=='
	$(UPGRADE_VENV)/bin/python -m pytest -q tests/webrtc

clean:
	rm -rf $(VENV) $(UPGRADE_VENV) .pytest_cache build *.egg-info
