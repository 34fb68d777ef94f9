# stanflow -- the two commands are `make run` and `make test`; both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stanflow-installed
export STANFLOW_HOME ?= $(CURDIR)/.stanflow
DATE ?=
PROFILE ?=

.PHONY: help setup run test test-fast lint lint-infra airflow bench bench-train bench-features bench-feast bench-e2e bench-sim bench-quality bench-lift compile clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv and install stanflow editable with its pinned stack (quiet when up to date)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing stanflow and its pinned stack into $(VENV) (about 2 minutes the first time)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip > $(VENV)/install.log 2>&1
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]' >> $(VENV)/install.log 2>&1 \
		|| { tail -n 40 $(VENV)/install.log; echo "setup: pip install failed; full log in $(VENV)/install.log"; exit 1; }
	@touch $@

run: setup  ## one daily retrain on the default world (simulated if absent); DATE=YYYY-MM-DD for another day
	@mkdir -p "$(STANFLOW_HOME)" && $(BIN)/stanflow daily $(if $(DATE),--date $(DATE),) 2> "$(STANFLOW_HOME)/run.log" \
		|| { tail -n 60 "$(STANFLOW_HOME)/run.log"; echo "make run failed; full log: $(STANFLOW_HOME)/run.log"; exit 1; }

test: setup  ## the whole suite: code, data, model and integration tests
	@$(BIN)/python -m pytest

lint: setup  ## ruff
	@$(BIN)/ruff check .

lint-infra:  ## yamllint, Kubernetes schemas, checkov on infra/ (own pinned .venv-infra, made on first use)
	@infra/lint.sh

airflow: setup  ## Airflow standalone with the DAGs in dags/ (login in the README); PROFILE=production: PostgreSQL, LocalExecutor, Redis, S3
	@mkdir -p "$(STANFLOW_HOME)/airflow"
	@$(if $(PROFILE),export STANFLOW_PROFILE="$(PROFILE)";) \
	airflow_env="$$($(BIN)/stanflow airflow-env)" && echo "$$airflow_env" && eval "$$airflow_env" && \
	AIRFLOW__API__HOST=127.0.0.1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/airflow standalone

bench: bench-train bench-features bench-feast bench-e2e bench-sim bench-quality bench-lift  ## every benchmark, one after another (results under bench/results/)

bench-train: setup  ## training samples/s of our PLE/STAN (fp32, bf16) vs torch-rechub's PLE, FLOP/s vs matmul peak, scaling, wechat peak memory (~10 min) -> bench/results/train.{json,png}
	@$(BIN)/python bench/train_speed.py --out bench/results/train.json

bench-features: setup  ## feature build events/s on the wechat world vs a pandas reference (equal results), scaling -> bench/results/features.{json,png}
	@$(BIN)/python bench/feature_build.py --preset wechat --serve-last-day --out bench/results/features.json

bench-feast: setup  ## Feast materialization rows/s (SQLite, Redis), online lookup p50/p99 via SDK and HTTP -> bench/results/feast.{json,png}
	@$(BIN)/python bench/feast_bench.py --out bench/results/feast.json

bench-e2e: setup  ## `make run` wall time by stage in a fresh home -> bench/results/e2e.{json,png}
	@$(BIN)/python bench/e2e.py --out bench/results/e2e.json

bench-sim: setup  ## simulator throughput (impressions/s) per preset
	@$(BIN)/python bench/simulator_speed.py --out bench/results/simulator.json

bench-quality: setup  ## every model, 3 seeds, small world (~90 min, 1 thread) -> bench/results/quality.{json,md,png}
	@$(BIN)/python bench/quality.py --preset small --seeds 0 1 2 --out bench/results/quality.json

bench-lift: setup  ## STAN - PLE lift against world knobs (stage heterogeneity, new-user share; ~10 min) -> bench/results/stan_lift.{json,png}
	@$(BIN)/python bench/stan_lift.py --out bench/results/stan_lift.json

compile: setup  ## compile the Kubeflow pipeline to IR YAML (components/stan_training_pipeline.yaml)
	@$(BIN)/stanflow pipeline compile

clean:  ## remove the data home (raw data, features, runs); keeps .venv
	rm -rf "$(STANFLOW_HOME)"
