#!/usr/bin/env bash
# Build the MinIO server from its Go module (pinned below) with the machine's Go, once per version, into
# ~/.cache/pgwarden/minio-<version>/bin/minio, so tests get a real S3-compatible server without Docker.
# Prints the binary's path on the last line of stdout; progress goes to stderr.
set -euo pipefail

# MinIO publishes no semver tags; the Go proxy serves commits as pseudo-versions (go list -m -versions).
version=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
module=github.com/minio/minio

cache_root=${PGWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden}
bin_dir=$cache_root/minio-$version/bin
binary=$bin_dir/minio

is_built() { [[ -f $bin_dir/.complete && -x $binary ]]; }

if is_built; then
  echo "$binary"
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time per version: a second caller waits, then finds the binary ready.
exec 9>"$cache_root/minio-$version.lock"
if ! flock -n 9; then
  echo "build-minio: another build of MinIO $version is running; waiting for it" >&2
  flock 9
fi
if is_built; then
  echo "$binary"
  exit 0
fi

go=$(command -v go || true)
[[ -n $go ]] || go=/usr/local/go/bin/go
[[ -x $go ]] || { echo "build-minio: no Go toolchain (looked for 'go' on PATH and /usr/local/go/bin/go); install Go >= 1.24" >&2; exit 1; }

jobs=${BUILD_JOBS:-$(nproc)}
log=$cache_root/minio-$version.build.log
staging=$cache_root/minio-$version/bin.partial
rm -rf "$staging"
mkdir -p "$staging"

start=$(date +%s)
echo "build-minio: building $module@$version with $("$go" version | awk '{print $3}'), -p $jobs; log: $log" >&2
echo "build-minio: the first build takes several minutes on 2 cores; later runs reuse $bin_dir" >&2

# A module-mode install needs no checkout: the proxy serves the source and go.sum pins its dependencies.
export GOBIN=$staging CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
if ! "$go" install -p "$jobs" -ldflags="-s -w" "$module@$version" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build-minio: go install failed; full log: $log" >&2
  exit 1
fi

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
touch "$bin_dir/.complete"
echo "build-minio: built MinIO $version in $(($(date +%s) - start))s into $bin_dir" >&2
echo "$binary"
