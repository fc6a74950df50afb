#!/usr/bin/env bash
# Build prometheus and promtool from the Prometheus Go module (pinned below) with the machine's Go, once per
# version, into ~/.cache/pgwarden/prometheus-<version>/bin/, so the alert rules are checked and unit-tested
# by the real rule evaluator and the e2e suite scrapes the operator with a real Prometheus. Prints the bin
# directory on the last line of stdout; progress goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

# Prometheus 3.x is published on the Go proxy as v0.3MM.P (release 3.MM.P); go list -m -versions lists them.
version=${PROMETHEUS_VERSION:-v0.316.0}
module=github.com/prometheus/prometheus
binaries=(prometheus promtool)
gocache_init build-prometheus prometheus "$version"
result=$bin_dir
gocache_ready_or_lock "Prometheus $version"
gocache_find_go 1.26

minor=${version#v0.}
release=3.$((10#${minor%%.*} % 100)).${minor#*.}
echo "build-prometheus: building $module/cmd/{prometheus,promtool}@$version (Prometheus $release) with" \
  "$("$go" version | awk '{print $3}'), -p $jobs; log: $log" >&2
echo "build-prometheus: the first build takes several minutes on 2 cores; later runs reuse $bin_dir" >&2
# Service discovery: only file, http and kubernetes (what a ServiceMonitor compiles to), not every cloud's.
# No builtinassets tag: the web UI's assets are built by npm, not in the module; the API needs none of them.
tags=netgo,remove_all_sd,enable_kubernetes_sd
common=github.com/prometheus/common/version
ldflags="-s -w -X $common.Version=$release -X $common.Branch=HEAD -X $common.BuildUser=pgwarden"
export GOBIN=$staging CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
# A module-mode install needs no checkout: the proxy serves the source and go.sum pins its dependencies.
if ! "$go" install -p "$jobs" -tags "$tags" -ldflags="$ldflags" \
  "$module/cmd/prometheus@$version" "$module/cmd/promtool@$version" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build-prometheus: go install failed; full log: $log" >&2
  exit 1
fi
gocache_publish "Prometheus $version"
