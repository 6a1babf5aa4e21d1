# Two commands on a fresh machine: `make serve` and `make test` (python3, make and pip only).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve test lint typecheck unit lock model clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,explain]'
	touch $(STAMP)

install: $(STAMP)

serve: install  ## serve the default model on 127.0.0.1:8000
	$(BIN)/modelserve serve

lint: install  ## ruff, the layer contracts (import-linter) and copied blocks in app/ (pylint)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pylint --disable=all --enable=duplicate-code app

typecheck: install
	$(BIN)/mypy

# pytest-xdist workers for unit and check: 4 on 2 cores, since many tests wait on servers,
# Prometheus or a label delay. tests/conftest.py keeps a module that shares a server
# on one worker and starts the long e2e modules first; the xdist_group "load" (soak, backpressure,
# canary share, swaps under load) runs on one worker, one test at a time.
PYTEST_WORKERS ?= 4

unit: install  ## the whole suite on $(PYTEST_WORKERS) parallel workers (pytest -n: about 9 min on 2 cores, 20 serial)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: check
check: lint typecheck  ## the fast tier, under 2 min: lint, mypy and the tests that start no server or CLI process
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not e2e and not slow" -q

test: lint typecheck check-rules docs unit  ## everything CI runs, about 10 min on 2 cores (pytest last: its summary closes the log)

.PHONY: docs
docs: install  ## the documentation site, strictly (a broken link or anchor fails), into site/
	$(BIN)/python -m scripts.gen_docs --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

.PHONY: check-rules
check-rules:  ## promtool check config + rules, promtool test rules, amtool check-config
	@tmp=$$(mktemp -d); \
	sed 's|/etc/prometheus/rules/|$(CURDIR)/prometheus/rules/|' prometheus/prometheus.yml > $$tmp/prometheus.yml; \
	promtool check config $$tmp/prometheus.yml; rc=$$?; rm -rf $$tmp; exit $$rc
	promtool check rules prometheus/rules/*.yml
	promtool test rules prometheus/tests/*.yml
	amtool check-config alertmanager/alertmanager.yml

.PHONY: check-k8s
check-k8s: install  ## kubernetes-validate --strict on deploy/kubernetes, promtool on its rules, generated files fresh
	$(BIN)/python scripts/check_k8s.py

k8s-generate: install  ## regenerate the PrometheusRule and dashboard ConfigMap from their sources
	$(BIN)/python -m scripts.gen_k8s

.PHONY: check-deploy
check-deploy: install check-k8s  ## offline: compose config + schema, workflow/dependabot schemas, hadolint, actionlint, promtool/amtool on the mounted configs
	$(BIN)/python scripts/check_deploy.py

.PHONY: bench
bench: install  ## side-by-side benchmark (needs wrk, h2load): modelserve vs the textbook baseline, protocols, ~12 min
	$(BIN)/python bench/run.py --markdown bench/latest.md

lock: install  ## re-pin every dependency after changing pyproject.toml
	$(BIN)/pip freeze --exclude-editable | grep -v -e '^pip==' -e '^-e ' > requirements.lock

model: install  ## train the default model from its spec as the next version, promote if not worse
	$(BIN)/modelserve train models/breast-cancer/train.yaml --registry models --promote-if-better

.PHONY: stack-test
stack-test: install  ## real Docker engine: image, container, compose stack (not in make test; ~10 min)
	MODELSERVE_STACK_TEST=1 timeout --kill-after=60 $${STACK_TEST_TIMEOUT_S:-1800} \
		$(BIN)/pytest -m stack -p no:cacheprovider -s -q tests/deploy/test_stack.py

.PHONY: k8s-test
k8s-test: install  ## a real two-node Kubernetes 1.20 (built once from Debian's source, cached): the shipped manifests, rollouts, promote, HPA (not in make test; ~8 min cached, ~14 cold)
	MODELSERVE_K8S_TEST=1 timeout --kill-after=60 $${K8S_TEST_TIMEOUT_S:-2400} \
		$(BIN)/pytest -m k8s -p no:cacheprovider -s -q tests/deploy/test_k8s_cluster.py

.PHONY: soak
soak: install  ## 10 min of predictions, feedback and reloads: errors, p99, RSS start/end (not in make test)
	$(BIN)/python -m scripts.soak --duration $${SOAK_S:-600}

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
