# Shared by hack/build-{base,image,pause}.sh: keep one build per content hash under
# ~/.cache/pgwarden/images/<name>-<key>/, one builder at a time, published atomically with a .complete
# marker (the image counterpart of gocache.sh). Source it, then:
#   key=$(imagecache_key file… -- setting…); imagecache_init build-x name "$key"
#   if imagecache_must_build "what"; then …build into "$staging"…; imagecache_publish "what"; fi
#   …use "$image_dir"…
# PGWARDEN_IMAGE_REFRESH=1 builds again even when a build is cached.
# shellcheck shell=bash

imagecache_init() {
  script=$1
  cache_root=${PGWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden}
  image_dir=$cache_root/images/$2-$3
  staging=$image_dir.partial
  lock=$image_dir.lock
  start=$(date +%s)
}

# The key of a set of inputs: a hash of the files' contents and paths (give paths relative to the
# repository, so the key is the same wherever it is cloned) and of the settings' words.
imagecache_key() {
  {
    while (($#)) && [[ $1 != -- ]]; do sha256sum "$1"; shift; done
    [[ ${1:-} == -- ]] && shift
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-16
}

imagecache_is_built() { [[ -f $image_dir/.complete ]]; }

# Succeed (holding the per-key lock, with an empty $staging) when the caller must build; fail when a
# build is cached, or another caller built it while this one waited for the lock.
imagecache_must_build() {
  if [[ -z ${PGWARDEN_IMAGE_REFRESH:-} ]] && imagecache_is_built; then return 1; fi
  mkdir -p "$(dirname "$image_dir")"
  exec 8>"$lock"
  if ! flock -n 8; then
    echo "$script: another build of $1 is running; waiting for it" >&2
    flock 8
    if imagecache_is_built; then return 1; fi
  fi
  rm -rf "$staging"
  mkdir -p "$staging"
}

imagecache_publish() {
  rm -rf "$image_dir"
  mv "$staging" "$image_dir"
  touch "$image_dir/.complete"
  echo "$script: built $1 in $(($(date +%s) - start))s into $image_dir" >&2
}
