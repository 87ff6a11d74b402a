# ping: the two commands are `make up` (run it) and `make test` (test everything).
.DEFAULT_GOAL := help
SHELL := /bin/bash

CARGO ?= cargo
WASM := target/wasm32-wasip2/wasm/ping_component.wasm
HOST := target/release/ping-host

.PHONY: help deps component build up test lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## Install what is missing (wasm32-wasip2 target, redis-server)
	@scripts/install-deps.sh

component: deps ## Build the Wasm component (size profile)
	$(CARGO) build -p ping-component --target wasm32-wasip2 --profile wasm
	@echo "component: $(WASM) ($$(stat -c %s $(WASM)) bytes)"

build: component ## Build the component and ping-host (release)
	$(CARGO) build --release -p ping-host

up: build ## Start Redis (AOF under .data/) and serve on 127.0.0.1:3000
	@scripts/up.sh

test: build ## Run every test (unit and end-to-end, real Redis)
	$(CARGO) test --release --workspace --exclude ping-component

lint: deps ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ping-component --target wasm32-wasip2 --profile wasm -- -D warnings

clean: ## Remove build output (keeps .data/)
	$(CARGO) clean
