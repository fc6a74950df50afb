#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kubectl from the Kubernetes Go modules pinned in
# hack/k8s/go.mod, once per version, into ~/.cache/pgwarden/kubernetes-<version>/bin.
# With --node, build the node's kubelet and kube-scheduler instead, into kubernetes-node-<version>/bin:
# a separate cache, so the control plane (and `make test`) never waits for the node's binaries.
# Prints the bin directory on the last line of stdout; progress goes to stderr.
# Environment: GO (toolchain), BUILD_JOBS (go build -p), PGWARDEN_CACHE (default ~/.cache/pgwarden).
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
module_dir=$root/hack/k8s
binaries=(kube-apiserver kube-controller-manager kubectl)
cache_name=kubernetes
case ${1:-} in
  "") ;;
  --node) binaries=(kubelet kube-scheduler) cache_name=kubernetes-node ;;
  *) echo "usage: hack/build-k8s.sh [--node]" >&2; exit 2 ;;
esac

version=$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9][^ ]*).*/\2/p' "$module_dir/go.mod" | head -n 1)
[[ -n $version ]] || { echo "build-k8s: no 'require k8s.io/kubernetes vX.Y.Z' line in $module_dir/go.mod" >&2; exit 1; }
gocache_init build-k8s "$cache_name" "$version"
result=$bin_dir
gocache_ready_or_lock "Kubernetes $version"
gocache_find_go 1.26

minor=${version#v1.}
minor=${minor%%.*}
pkg_prefix=k8s.io/kubernetes/cmd
ldflags="-s -w"
# The version the binaries report (and that kube-apiserver uses as its binary/emulation version).
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "build-k8s: building Kubernetes $version (${binaries[*]}) with $("$go" version | awk '{print $3}'), -p $jobs" >&2
echo "build-k8s: first build takes 15-30 minutes on 2 cores; later runs reuse $bin_dir. Log: $log" >&2

cd "$module_dir"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" CGO_ENABLED=0
{
  echo "== go mod download"
  "$go" mod download
} >"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "build-k8s: module download failed; see $log" >&2; exit 1; }
echo "build-k8s: modules ready after $(($(date +%s) - start))s; compiling" >&2

pkgs=()
for b in "${binaries[@]}"; do pkgs+=("$pkg_prefix/$b"); done
# -v names each package as it is compiled: count them so a long build shows it is moving.
set +e
"$go" build -v -p "$jobs" -trimpath -ldflags="$ldflags" -o "$staging/" "${pkgs[@]}" 2>&1 |
  tee -a "$log" |
  awk -v start="$start" '
    /^(#|[a-z].*\.go:[0-9]+)/ { print > "/dev/stderr"; next }
    { n++; if (n % 100 == 0) { printf "build-k8s: %d packages compiled, %ds\n", n, systime() - start > "/dev/stderr"; fflush("/dev/stderr") } }
  '
status=${PIPESTATUS[0]}
set -e
if ((status != 0)); then
  tail -n 30 "$log" >&2
  echo "build-k8s: go build failed (exit $status); full log: $log" >&2
  exit "$status"
fi

gocache_publish "Kubernetes $version"
