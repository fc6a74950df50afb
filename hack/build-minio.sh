#!/usr/bin/env bash
# Build the MinIO server from its Go module (pinned below) with the machine's Go, once per version, into
# ~/.cache/pgwarden/minio-<version>/bin/minio, so tests get a real S3-compatible server without Docker.
# Prints the binary's path on the last line of stdout; progress goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

# MinIO publishes no semver tags; the Go proxy serves commits as pseudo-versions (go list -m -versions).
version=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
module=github.com/minio/minio
binaries=(minio)
gocache_init build-minio minio "$version"
result=$bin_dir/minio
gocache_ready_or_lock "MinIO $version"
gocache_find_go 1.24

echo "build-minio: building $module@$version with $("$go" version | awk '{print $3}'), -p $jobs; log: $log" >&2
echo "build-minio: the first build takes several minutes on 2 cores; later runs reuse $bin_dir" >&2
# A module-mode install needs no checkout: the proxy serves the source and go.sum pins its dependencies.
export GOBIN=$staging CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
if ! "$go" install -p "$jobs" -ldflags="-s -w" "$module@$version" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build-minio: go install failed; full log: $log" >&2
  exit 1
fi
gocache_publish "MinIO $version"
