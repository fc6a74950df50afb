#!/usr/bin/env bash
# Build helm from its Go module (pinned below) with the machine's Go, once per version, into
# ~/.cache/pgwarden/helm-<version>/bin/helm, so the chart is linted and rendered by a real helm without
# a prebuilt download. Prints the binary's path on the last line of stdout; progress goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

version=${HELM_VERSION:-v4.3.1}
major=${version%%.*}
module=helm.sh/helm/$major
binaries=(helm)
gocache_init build-helm helm "$version"
result=$bin_dir/helm
gocache_ready_or_lock "helm $version"
gocache_find_go 1.25

echo "build-helm: building $module/cmd/helm@$version with $("$go" version | awk '{print $3}'), -p $jobs; log: $log" >&2
echo "build-helm: the first build takes a few minutes on 2 cores; later runs reuse $bin_dir" >&2
# `helm version` reads these; without them a module build reports a development version.
ldflags="-s -w -X $module/internal/version.version=$version -X $module/internal/version.gitTreeState=clean"
# A module-mode install needs no checkout: the proxy serves the source and go.sum pins its dependencies.
export GOBIN=$staging CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
if ! "$go" install -p "$jobs" -ldflags="$ldflags" "$module/cmd/helm@$version" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build-helm: go install failed; full log: $log" >&2
  exit 1
fi
gocache_publish "helm $version"
