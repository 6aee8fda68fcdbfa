# Two commands do all the set-up: `make run` (demo against the embedded server) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/enx-bot run configs/demo.yaml

test: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/mypy --strict bot
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
