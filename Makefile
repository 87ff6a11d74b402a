# ping: the two commands are `make up` (run it) and `make test` (test everything).
.DEFAULT_GOAL := help
SHELL := /bin/bash

CARGO ?= cargo
WASM := target/wasm32-wasip2/wasm/ping_component.wasm
HOST := target/release/ping-host

.PHONY: help deps chart-tools monitoring-tools bench-tools component build up monitor test chart-test monitoring-test sync-monitoring fuzz cluster-test bench soak lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install what is missing (wasm32-wasip2 target, redis-server, docker-registry)
	@scripts/install-deps.sh

chart-tools: ## Install pinned helm, kubectl and kubernetes-validate into .tools/
	@scripts/install-k8s-tools.sh

monitoring-tools: ## Install the pinned dashboard schema check (@grafana/schema, TypeScript) into .tools/
	@scripts/install-monitoring-tools.sh

bench-tools: deps ## Install pinned oha and the Flask/matplotlib venv into .tools/
	@scripts/install-bench-tools.sh

component: deps ## Build the Wasm components (size profile): ping, and the fault tests' misbehave
	$(CARGO) build -p ping-component -p misbehave-component --target wasm32-wasip2 --profile wasm
	@echo "component: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

build: component ## Build the component and ping-host (release)
	$(CARGO) build --release -p ping-host

up: build ## Start Redis (AOF under .data/) and serve on 127.0.0.1:3000 (metrics on 127.0.0.1:9464)
	@scripts/up.sh

monitor: deps ## Next to `make up`: Prometheus on 127.0.0.1:9090 with ping's rules, and a Redis exporter
	@scripts/monitor.sh

test: build chart-tools monitoring-tools ## Run every test: Rust unit and end-to-end (real Redis, registry, Prometheus), chart and monitoring checks, fuzz smoke
	$(CARGO) test --release --workspace --exclude ping-component --exclude misbehave-component
	.tools/venv/bin/python -m pytest -q helm/tests monitoring/tests
	FUZZ_SECS=20 scripts/fuzz.sh

chart-test: chart-tools ## Only the chart: helm lint/template, Kubernetes schemas, policies
	.tools/venv/bin/python -m pytest -q helm/tests

fuzz: ## Fuzz the manifest parser, router and allow-list (FUZZ_SECS per target, default 300)
	FUZZ_SECS=$${FUZZ_SECS:-300} scripts/fuzz.sh

monitoring-test: chart-tools monitoring-tools ## Only the monitoring assets: promtool rules and unit tests, dashboard schema
	.tools/venv/bin/python -m pytest -q monitoring/tests

sync-monitoring: ## Copy monitoring/ rules and dashboards into the chart (helm/ping/files/)
	mkdir -p helm/ping/files/rules helm/ping/files/dashboards
	cp monitoring/rules/*.yml helm/ping/files/rules/
	cp monitoring/dashboards/*.json helm/ping/files/dashboards/

soak: build ## Soak: /ping at half capacity for SOAK_SECS (default 600); no errors, flat memory, exact count
	PING_SOAK_SECS=$${SOAK_SECS:-600} $(CARGO) test --release -p ping-e2e --test soak -- --nocapture

cluster-test: build chart-tools bench-tools ## Cluster journeys (needs a cluster with Spin nodes; see tests/cluster/run.sh)
	tests/cluster/run.sh

bench: build bench-tools ## Benchmarks: ping-host vs Redis, hyper and Flask; writes bench/results/ and BENCHMARKS.md
	$(CARGO) build --release -p ping-baseline
	$(CARGO) build --release -p ping-host --examples
	.tools/bench-venv/bin/python bench/run.py

lint: deps ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ping-component -p misbehave-component --target wasm32-wasip2 --profile wasm -- -D warnings
	cd fuzz && $(CARGO) fmt -- --check && $(CARGO) clippy --all-targets -- -D warnings

clean: ## Remove build output (keeps .data/)
	$(CARGO) clean
