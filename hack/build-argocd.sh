#!/usr/bin/env bash
# Build Argo CD (one binary; it picks its component by the name it runs as) from its Go module, once per
# version, into ~/.cache/pgwarden/argocd-<version>/bin, with symlinks argocd-application-controller and
# argocd-repo-server, so the e2e tests sync through the real application controller and repo server.
# Prints the bin directory on the last line of stdout; progress goes to stderr.
# With --crds, print instead the module's manifests/crds/ in the Go module cache (where the tests take the
# Application and AppProject CRDs from), fetching the module from the proxy if it is not there.
# Environment: ARGOCD_VERSION, BUILD_JOBS (go build -p), PGWARDEN_CACHE (default ~/.cache/pgwarden).
#
# The module cannot be built with `go install module@version`: its go.mod has a replace block (the k8s.io
# staging modules and a few pins) that a dependency's build ignores, and it replaces gitops-engine with a
# local directory. So a throwaway wrapper module repeats that replace block, read from the module's own
# go.mod at build time (nothing of Argo CD is committed here), and points gitops-engine at its published
# module of the same version.
set -euo pipefail
source "$(dirname "$0")/lib/gocache.sh"

version=${ARGOCD_VERSION:-v3.6.2}
module=github.com/argoproj/argo-cd/v3
# The repo server runs git-verify-wrapper.sh (and it gpg-wrapper.sh) from PATH on every manifest generation:
# Argo CD's image installs them beside the binary from the module's hack/, and so does this script.
binaries=(argocd argocd-application-controller argocd-repo-server git-verify-wrapper.sh gpg-wrapper.sh)
gocache_init build-argocd argocd "$version"
result=$bin_dir
case ${1:-} in
  "" | --crds) ;;
  *) echo "usage: hack/build-argocd.sh [--crds]" >&2; exit 2 ;;
esac
# Argo CD v3.6 needs Go 1.27: the go command fetches that toolchain from the Go module proxy.
export GOTOOLCHAIN=${ARGOCD_GOTOOLCHAIN:-go1.27.3} CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

# `go mod download -json` of the module: where the proxy's copy is (the module cache), one "Key" of it.
module_file() {
  (cd / && "$go" mod download -json "$module@$version") | sed -nE "s/^[[:space:]]*\"$1\": \"(.*)\",?\$/\1/p"
}

if [[ ${1:-} == --crds ]]; then
  gocache_find_go 1.26
  dir=$(module_file Dir)
  [[ -d $dir/manifests/crds ]] || { echo "build-argocd: no manifests/crds in $module@$version ($dir)" >&2; exit 1; }
  echo "$dir/manifests/crds"
  exit 0
fi
gocache_ready_or_lock "Argo CD $version"
gocache_find_go 1.26

wrapper=$cache_root/argocd-$version/wrapper
rm -rf "$wrapper"
mkdir -p "$wrapper"
trap 'rm -rf "$wrapper"' EXIT
echo "build-argocd: building $module/cmd@$version with $GOTOOLCHAIN, -p $jobs; log: $log" >&2
echo "build-argocd: the first build takes 6-30 minutes on 2 cores (the more so the busier); later runs reuse $bin_dir" >&2

cd "$wrapper"
echo "== the module's go.mod from the proxy" >"$log"
module_go_mod=$(module_file GoMod 2>>"$log")
[[ -f $module_go_mod ]] || { tail -n 30 "$log" >&2; echo "build-argocd: module download failed; see $log" >&2; exit 1; }
go_version=$(sed -nE 's/^go ([0-9.]+)$/\1/p' "$module_go_mod")
# Every replace of the module except those naming a local directory (a dependency cannot use them).
replaces=$(awk '
  /^replace \($/ { block = 1; next }
  block && /^\)$/ { block = 0; next }
  block && /=>/ && !/=> *\.\.?\// { sub(/^[ \t]+/, ""); print "replace " $0 }
  !block && /^replace [^(]/ && !/=> *\.\.?\// { print }
' "$module_go_mod")
cat >go.mod <<EOF
module pgwarden.local/argocd-build

go $go_version

require $module $version

$replaces
replace github.com/argoproj/argo-cd/gitops-engine/v3 => github.com/argoproj/argo-cd/gitops-engine/v3 $version
EOF
# `argocd version` and the API report these; without them a module build says v99.99.99+unknown. The
# proxy does not serve the tag's commit, so it says v3.6.2+unknown; kubectl's version is the module's.
kubectl_version=$(sed -nE 's/^[[:space:]]*k8s\.io\/kubectl => k8s\.io\/kubectl (v[^ ]+)$/\1/p' "$module_go_mod")
ldflags="-s -w -X $module/common.version=${version#v} -X $module/common.gitTag=$version"
ldflags+=" -X $module/common.gitTreeState=clean -X $module/common.kubectlVersion=$kubectl_version"

{
  echo "== go.mod"
  cat go.mod
  echo "== go get $module/cmd@$version"
  "$go" get "$module/cmd@$version"
} >>"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "build-argocd: resolving modules failed; see $log" >&2; exit 1; }
echo "build-argocd: modules ready after $(($(date +%s) - start))s; compiling" >&2

set +e
"$go" build -v -p "$jobs" -trimpath -ldflags="$ldflags" -o "$staging/argocd" "$module/cmd" 2>&1 |
  tee -a "$log" |
  awk -v start="$start" '
    /^(#|[a-z].*\.go:[0-9]+)/ { print > "/dev/stderr"; next }
    { n++; if (n % 200 == 0) { printf "build-argocd: %d packages compiled, %ds\n", n, systime() - start > "/dev/stderr"; fflush("/dev/stderr") } }
  '
status=${PIPESTATUS[0]}
set -e
if ((status != 0)); then
  tail -n 30 "$log" >&2
  echo "build-argocd: go build failed (exit $status); full log: $log" >&2
  exit "$status"
fi
for name in argocd-application-controller argocd-repo-server; do ln -s argocd "$staging/$name"; done
install -m 0755 "$(module_file Dir)"/hack/{git-verify-wrapper.sh,gpg-wrapper.sh} "$staging/"
gocache_publish "Argo CD $version"
