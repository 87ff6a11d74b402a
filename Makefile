# ping: the two commands are `make up` (run it) and `make test` (test everything).
.DEFAULT_GOAL := help
SHELL := /bin/bash

CARGO ?= cargo
WASM := target/wasm32-wasip2/wasm/ping_component.wasm
HOST := target/release/ping-host
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# `make image IMAGE=ghcr.io/you/ping` names it for `podman push`; the tag is always the version.
IMAGE ?= localhost/ping
MUSL := x86_64-unknown-linux-musl

.PHONY: help deps container-tools image-context image container-test chart-tools monitoring-tools bench-tools component build up monitor test chart-test monitoring-test sync-monitoring fuzz cluster-test bench soak lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install what is missing (wasm32-wasip2 target, redis-server, docker-registry)
	@scripts/install-deps.sh

container-tools: chart-tools ## Install podman, buildah, runc, the musl target, pinned podman-compose and the Compose schema
	@scripts/install-container-tools.sh

chart-tools: ## Install pinned helm, kubectl and kubernetes-validate into .tools/
	@scripts/install-k8s-tools.sh

monitoring-tools: ## Install the pinned dashboard schema check (@grafana/schema, TypeScript) into .tools/
	@scripts/install-monitoring-tools.sh

bench-tools: deps ## Install pinned oha, wasmtime CLI, inferno, the Flask/matplotlib venv into .tools/, and perf
	@CARGO="$(CARGO)" scripts/install-bench-tools.sh

component: deps ## Build the Wasm components (size profile): ping, and the tests' misbehave (WASIp2) and p3-ping (WASIp3, spin-sdk 7)
	$(CARGO) build -p ping-component -p misbehave-component -p p3-ping-component --target wasm32-wasip2 --profile wasm
	@echo "component: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

build: component ## Build the component and ping-host (release)
	$(CARGO) build --release -p ping-host

image-context: component container-tools ## What the Dockerfile copies: static ping-host and the precompiled component (target/image/)
	$(CARGO) build --release --target $(MUSL) -p ping-host
	rm -rf target/image && mkdir -p target/image
	strip -o target/image/ping-host target/$(MUSL)/release/ping-host
	target/image/ping-host precompile --manifest spin.toml --out-dir target/image/precompiled

image: image-context ## Build the container image (localhost/ping:VERSION; IMAGE= to rename) with podman, no daemon (push it with `podman push`)
	podman build --file Dockerfile --tag $(IMAGE):$(VERSION) \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%dT%H:%M:%SZ) \
	  .
	@echo "image: $(IMAGE):$(VERSION) ($$(podman image inspect --format '{{.Size}}' $(IMAGE):$(VERSION)) bytes)"

container-test: image ## Only the container image and compose.yaml: podman (runc), podman-compose, a real Redis
	.tools/venv/bin/python -m pytest -q tests/container

up: build ## Start Redis (AOF under .data/) and serve on 127.0.0.1:3000 (metrics on 127.0.0.1:9464)
	@scripts/up.sh

monitor: deps ## Next to `make up`: Prometheus on 127.0.0.1:9090 with ping's rules, and a Redis exporter
	@scripts/monitor.sh

test: build chart-tools monitoring-tools image ## Run every test: Rust unit and end-to-end (real Redis, registry, Prometheus), chart, monitoring, container image and compose checks, fuzz smoke
	$(CARGO) test --release --workspace --exclude ping-component --exclude misbehave-component --exclude p3-ping-component --exclude hello-component
	.tools/venv/bin/python -m pytest -q helm/tests monitoring/tests tests/container
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

cluster-test: build chart-tools ## Cluster journeys (needs a cluster with Spin nodes; see tests/cluster/run.sh)
	CARGO="$(CARGO)" scripts/install-bench-tools.sh --load-only
	tests/cluster/run.sh

# A short run: BENCH_DURATION=3 BENCH_CONCURRENCY=64 make bench (BENCH_PROFILE=0 skips the flame graphs).
bench: build bench-tools ## Benchmarks: ping-host vs Redis, hyper, Flask and wasmtime serve; writes bench/results/ and BENCHMARKS.md
	$(CARGO) build --release -p ping-baseline
	$(CARGO) build --release -p ping-host --examples
	$(CARGO) build -p hello-component --target wasm32-wasip2 --profile wasm
	.tools/bench-venv/bin/python bench/run.py

lint: deps ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ping-component -p misbehave-component -p p3-ping-component -p hello-component --target wasm32-wasip2 --profile wasm -- -D warnings
	cd fuzz && $(CARGO) fmt -- --check && $(CARGO) clippy --all-targets -- -D warnings

clean: ## Remove build output (keeps .data/)
	$(CARGO) clean
