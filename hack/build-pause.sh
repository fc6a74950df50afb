#!/usr/bin/env bash
# Build the Pod sandbox's pause image from Kubernetes' own pause.c (the Go module cache of the version
# pinned in hack/k8s/go.mod), a static gcc build in a FROM scratch image, once per source hash into
# ~/.cache/pgwarden/images/pause-<key>/: image.tar (OCI archive) and ref (localhost/pause:<version>).
# Prints the archive's path on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/apt-packages.sh
source hack/lib/imagecache.sh
source hack/lib/podman.sh

fail() { echo "build-pause: $*" >&2; exit 1; }
((EUID == 0)) || fail "run as root (podman builds here as root): sudo $0"
version=$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9][^ ]*).*/\2/p' hack/k8s/go.mod | head -n 1)
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
source_file=$("$go" env GOMODCACHE)/k8s.io/kubernetes@$version/build/pause/linux/pause.c
if [[ ! -f $source_file ]]; then
  (cd hack/k8s && GOFLAGS=-mod=mod "$go" mod download k8s.io/kubernetes) ||
    fail "cannot download k8s.io/kubernetes $version into the Go module cache"
fi
key=$(imagecache_key hack/build-pause.sh -- "$version" "$(sha256sum <"$source_file")")
imagecache_init build-pause pause "$key"
name=localhost/pause:$version

if imagecache_must_build "the pause image"; then
  apt_packages_ensure build-pause
  gcc -Os -static -Wall -Werror -DVERSION="$version" -o "$staging/pause" "$source_file"
  strip "$staging/pause"
  printf '%s\n' 'FROM scratch' 'COPY pause /pause' 'USER 65535:65535' 'ENTRYPOINT ["/pause"]' >"$staging/Containerfile"
  pgw_podman build "${pgw_build_flags[@]}" --quiet --file "$staging/Containerfile" --tag "$name" "$staging" >/dev/null
  pgw_podman save --quiet --format oci-archive --output "$staging/image.tar" "$name"
  echo "$name" >"$staging/ref"
  rm -f "$staging/pause" "$staging/Containerfile"
  imagecache_publish "the pause image"
fi
echo "$image_dir/image.tar"
