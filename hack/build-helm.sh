#!/usr/bin/env bash
# Build helm from its Go module (pinned below) with the machine's Go, once per version, into
# ~/.cache/pgwarden/helm-<version>/bin/helm, so the chart is linted and rendered by a real helm without
# a prebuilt download. Prints the binary's path on the last line of stdout; progress goes to stderr.
set -euo pipefail

version=${HELM_VERSION:-v4.3.1}
major=${version%%.*}
module=helm.sh/helm/$major

cache_root=${PGWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden}
bin_dir=$cache_root/helm-$version/bin
binary=$bin_dir/helm

is_built() { [[ -f $bin_dir/.complete && -x $binary ]]; }

if is_built; then
  echo "$binary"
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time per version: a second caller waits, then finds the binary ready.
exec 9>"$cache_root/helm-$version.lock"
if ! flock -n 9; then
  echo "build-helm: another build of helm $version is running; waiting for it" >&2
  flock 9
fi
if is_built; then
  echo "$binary"
  exit 0
fi

go=$(command -v go || true)
[[ -n $go ]] || go=/usr/local/go/bin/go
[[ -x $go ]] || { echo "build-helm: no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install Go >= 1.25" >&2; exit 1; }

jobs=${BUILD_JOBS:-$(nproc)}
log=$cache_root/helm-$version.build.log
staging=$cache_root/helm-$version/bin.partial
rm -rf "$staging"
mkdir -p "$staging"

start=$(date +%s)
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

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
touch "$bin_dir/.complete"
echo "build-helm: built helm $version in $(($(date +%s) - start))s into $bin_dir" >&2
echo "$binary"
