# modeldrop: `make demo` runs the whole story locally, `make test` runs every test. Both set up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup check test lint fmt typecheck demo up down status bench-serving schemas serving-flags lock clean

$(VENV)/.setup-stamp: requirements.txt pyproject.toml scripts/bootstrap.sh scripts/cached_env.sh
	bash scripts/bootstrap.sh
	touch $@

setup: $(VENV)/.setup-stamp ## make .venv (heavy packages cached outside the repo by lock-file hash)

lint: setup ## ruff (lint + format check), mypy --strict, and the import contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	scripts/lint_imports.sh --no-cache

fmt: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: setup
	$(VENV)/bin/mypy

check: setup lint ## the inner loop: lint, types, unit and contract tests without the vLLM engine (~3 min)
	$(PY) -m pytest -m "not engine" -q tests/functions tests/cli tests/serving tests/terraform $(PYTEST_ARGS)

test: setup lint ## every test: unit, contract (real SDKs over the wire), engine, end to end
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup ## the whole story on this machine: stack up, upload, deploy, serve, idle teardown, stack down
	$(PY) -m local.demo $(if $(MODEL),--model $(MODEL))

up: setup ## start the local stack in the background
	$(VENV)/bin/modeldrop local up

down: ## stop the local stack
	$(VENV)/bin/modeldrop local down

status: setup
	$(VENV)/bin/modeldrop local status

schemas: setup ## regenerate schemas/*.json from the pydantic models
	$(PY) -m modeldrop.schemas --write

serving-flags: setup ## regenerate functions/modeldrop/serving_flags.json from the installed vLLM's parser
	$(PY) -m serving.flags_snapshot --write

bench-serving: setup ## the serving benchmark on this machine's CPU (see docs/benchmarks.md)
	$(PY) -m local.tiny_model .local/bench-model
	VLLM_CPU_KVCACHE_SPACE=1 $(PY) -m serving.bench --model .local/bench-model --concurrency 1,16,64 \
		--gpu-memory-utilization 0.2 --log-dir .local/bench-logs --out .local/bench-serving.json

lock: ## recompile requirements.txt from requirements.in (needs network to the package index)
	bash scripts/lock.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
