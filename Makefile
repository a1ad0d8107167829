# vpsie-autoscaler — every install step lives here, so a fresh machine needs only Python 3.11+ and Go 1.26.
#
#   make test        set up, lint, type-check, build the local control plane (cached), run every test
#   make demo        local control plane + VPSie simulator + autoscaler: watch it scale up and down
#   make devcluster  start the local control plane in the background (.devcluster/kubeconfig)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/venv/bin/uv
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-groups
	@touch $@

.PHONY: setup
setup: .venv/.synced ## create .venv from uv.lock

.PHONY: lock
lock: $(UV) ## re-resolve uv.lock after changing dependencies
	$(UV) lock

.PHONY: fmt
fmt: setup ## format and auto-fix
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

.PHONY: lint
lint: setup ## ruff (lint + format check), mypy --strict, import contracts
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

.PHONY: devcluster-build
devcluster-build: ## build etcd, kube-apiserver/scheduler/controller-manager, kwok, helm (cached by pin hash)
	python3 hack/devcluster/build.py

.PHONY: devcluster
devcluster: setup devcluster-build ## start the local control plane in the background
	$(PY) -m hack.devcluster.cli up

.PHONY: devcluster-down
devcluster-down: setup ## stop the local control plane
	$(PY) -m hack.devcluster.cli down

.PHONY: devcluster-status
devcluster-status: setup ## is the local control plane running and ready?
	$(PY) -m hack.devcluster.cli status

.PHONY: demo
demo: setup devcluster-build ## local control plane + VPSie simulator + autoscaler: watch it scale up and down
	$(PY) -m hack.demo $(DEMO_ARGS)

CHART := charts/vpsie-autoscaler

.PHONY: chart-crds
chart-crds: setup ## copy the CRDs from `vpsie-autoscaler crds` into the chart (templates/crds/)
	$(PY) -m hack.chart.crds

.PHONY: chart-lint
chart-lint: devcluster-build ## helm lint --strict the chart with its default and every ci/*-values.yaml
	helm="$$(python3 hack/devcluster/build.py --print-dir)/helm"; \
	"$$helm" lint --strict $(CHART); \
	for values in $(CHART)/ci/*-values.yaml; do "$$helm" lint --strict $(CHART) -f "$$values"; done

CHART_DIST ?= dist/charts

.PHONY: chart
chart: devcluster-build ## helm lint --strict, then helm package the chart into $(CHART_DIST)/vpsie-autoscaler-<version>.tgz
	helm="$$(python3 hack/devcluster/build.py --print-dir)/helm"; \
	"$$helm" lint --strict $(CHART); \
	"$$helm" package $(CHART) --destination $(CHART_DIST)

.PHONY: chart-docs
chart-docs: setup ## regenerate the values table of the chart README from the values.yaml comments
	$(PY) -m hack.chart.values_table

.PHONY: promtool-build
promtool-build: ## build promtool from the pinned Prometheus module (cached by pin hash; tests the alert rules)
	python3 hack/promtool/build.py

.PHONY: image
image: setup ## build the image for linux/amd64 and linux/arm64 with buildah, smoke-test it, record sizes
	hack/image/build.sh

.PHONY: image-reproducible
image-reproducible: setup ## build the amd64 image twice from a clean export of HEAD: both digests must match
	hack/image/build.sh reproduce

.PHONY: image-check
image-check: setup devcluster-build ## run the built amd64 image's controller as UID 65532 on the local control plane
	$(PY) -m hack.image.run_check

# pytest exits 5 when it collected nothing: that must never pass as green.
define run_pytest
	rc=0; $(PY) -m pytest $(1) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc
endef

.PHONY: test-unit
test-unit: setup ## unit tests only (no cluster)
	$(call run_pytest,tests/unit)

.PHONY: test
test: setup lint devcluster-build promtool-build ## everything CI runs: lint, types, unit, integration and end-to-end tests
	REQUIRE_DEVCLUSTER=1 $(call run_pytest,tests)

# The full chaos run: leader kills, graceful stops and VPSie faults under a changing workload; the
# figures come last and a figure off its goal fails. The short version runs in `make test`
# (tests/chaos/test_chaos_short.py). docs/reliability.md has the scenarios, checks and results.
CHAOS_KILLS ?= 100
CHAOS_FAULT_MINUTES ?= 10
CHAOS_SEED ?=

.PHONY: chaos
chaos: setup devcluster-build ## chaos run: CHAOS_KILLS leader SIGKILLs, CHAOS_FAULT_MINUTES of VPSie faults, CHAOS_SEED replays
	report="$$(mktemp)"; rc=0; \
	REQUIRE_DEVCLUSTER=1 CHAOS_FULL=1 CHAOS_REPORT="$$report" CHAOS_KILLS=$(CHAOS_KILLS) \
	CHAOS_FAULT_MINUTES=$(CHAOS_FAULT_MINUTES) CHAOS_SEED=$(CHAOS_SEED) \
	$(PY) -m pytest tests/chaos/test_chaos_full.py tests/chaos/test_chaos_more_full.py -s -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	echo; echo "== chaos figures"; if [ -s "$$report" ]; then cat "$$report"; else echo "(no figures: the run failed before any)"; fi; \
	rm -f "$$report"; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

BENCHMARKS := benchmarks.informer_bench benchmarks.planner_bench benchmarks.autoscaling_bench benchmarks.decision_latency benchmarks.launch_bench benchmarks.empty_bulk_bench benchmarks.consolidation_bench

.PHONY: bench
bench: setup ## benchmark scripts (numbers go to docs/benchmarks.md)
	@for b in $(BENCHMARKS); do echo "== $$b"; $(PY) -m $$b; done

# Side by side with Karpenter's kwok provider (built from hack/karpenter, cached by pin hash) on one
# local control plane: bursts, packing, RSS/CPU at 1 000 nodes / 30 000 pods, scale-down. Not in `make
# test` (it takes about half an hour); COMPARE_ARGS passes options (`--help`). docs/benchmarks.md.
COMPARE_ARGS ?=

.PHONY: bench-compare
bench-compare: setup devcluster-build ## vpsie-autoscaler and Karpenter (kwok) on the same workloads, one run
	python3 hack/karpenter/build.py
	$(PY) -m benchmarks.compare $(COMPARE_ARGS)

.PHONY: clean
clean: ## remove local build output (keeps the tool cache outside the repo)
	rm -rf .venv .tools .devcluster .pytest_cache .mypy_cache .ruff_cache .hypothesis
