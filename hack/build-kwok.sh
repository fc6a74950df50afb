#!/usr/bin/env bash
# Build kwok (Kubernetes WithOut Kubelet) from its Go module, once per version, into
# ~/.cache/pgwarden/kwok-<version>/bin/kwok: fake nodes whose Pods run to completion without containers, so
# bench/operator_scale.py drives thousands of resources and their Jobs through the real API server.
# Prints the binary's path on the last line of stdout; progress goes to stderr. Built under nice 19 (the
# machine is shared), one builder at a time (the per-version lock of hack/lib/gocache.sh), logged.
# With --stages, print instead the module's kustomize/stage/ in the Go module cache (kwok's own Stage
# manifests, which bench/kwok.py configures it with), fetching the module from the proxy if it is not there.
# Environment: KWOK_VERSION, BUILD_JOBS (go build -p), PGWARDEN_CACHE (default ~/.cache/pgwarden).
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

version=${KWOK_VERSION:-v0.8.0}
module=sigs.k8s.io/kwok
binaries=(kwok)
gocache_init build-kwok kwok "$version"
result=$bin_dir/kwok
case ${1:-} in
  "") ;;
  --stages)
    gocache_find_go 1.26
    dir=$(cd / && GOTOOLCHAIN=local "$go" mod download -json "$module@$version" | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
    [[ -d $dir/kustomize/stage ]] || { echo "build-kwok: no kustomize/stage in $module@$version ($dir)" >&2; exit 1; }
    echo "$dir/kustomize/stage"
    exit 0
    ;;
  *) echo "usage: hack/build-kwok.sh [--stages]" >&2; exit 2 ;;
esac
gocache_ready_or_lock "kwok $version"
gocache_find_go 1.26

echo "build-kwok: building $module/cmd/kwok@$version with $("$go" version | awk '{print $3}'), -p $jobs; log: $log" >&2
echo "build-kwok: the first build takes 5-15 minutes on 2 cores; later runs reuse $bin_dir" >&2
# A module-mode install needs no checkout: the proxy serves the source and go.sum pins its dependencies.
export GOBIN=$staging CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
if ! nice -n 19 "$go" install -p "$jobs" -ldflags="-s -w" "$module/cmd/kwok@$version" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build-kwok: go install failed; full log: $log" >&2
  exit 1
fi
gocache_publish "kwok $version"
