#!/usr/bin/env bash
# Put pgwarden's image of the current sources (hack/build-image.sh, cached per content hash) and the pause
# image into the node's containerd, importing only what it lacks, and keep at most three pgwarden images
# there (a run still using an older one keeps it for a while). Prints `image <ref>` and `pause <ref>` on
# stdout; progress goes to stderr. hack/cluster-up.sh runs it on every call, so an edited source tree gets
# its image even when the cluster was already up.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/node_env.sh
source hack/node_env.sh

fail() { echo "node-images: ERROR: $*" >&2; exit 1; }
ctr() { command ctr --address "$containerd_sock" --namespace k8s.io "$@"; }
ctr version >/dev/null 2>&1 || fail "no containerd answers at $containerd_sock: start the cluster (hack/cluster-up.sh)"

image_archive=$(hack/build-image.sh)
pause_archive=$(hack/build-pause.sh)
exec 6>"$node_dir/images.lock"
flock 6
# A listing, not `ctr … | grep -q`: grep's early exit would fail the pipeline (pipefail).
has_image() { [[ $'\n'$(ctr images ls -q)$'\n' == *$'\n'"$1"$'\n'* ]]; }
for archive in "$pause_archive" "$image_archive"; do
  ref=$(<"$(dirname "$archive")/ref")
  has_image "$ref" && continue
  echo "node-images: loading $ref into containerd" >&2
  ctr images import "$archive" >"$node_dir/import.log" 2>&1 ||
    { cat "$node_dir/import.log" >&2; fail "ctr images import $archive failed"; }
  has_image "$ref" || fail "containerd lists no $ref after the import; see $node_dir/import.log"
done
image_ref=$(<"$(dirname "$image_archive")/ref")
# The order images were loaded in (oldest first): all but the newest three go; the current one stays.
loaded=$node_dir/images.loaded
{ grep -vxF "$image_ref" "$loaded" 2>/dev/null || true; echo "$image_ref"; } >"$loaded.tmp"
mv "$loaded.tmp" "$loaded"
while (($(wc -l <"$loaded") > 3)); do
  ctr images rm "$(head -n 1 "$loaded")" >/dev/null 2>&1 || true
  tail -n +2 "$loaded" >"$loaded.tmp" && mv "$loaded.tmp" "$loaded"
done
echo "image $image_ref"
echo "pause $(<"$(dirname "$pause_archive")/ref")"
