# Shared by hack/build-*.sh: build Go binaries once per version into ~/.cache/pgwarden/<name>-<version>/bin,
# one builder at a time, published atomically with a .complete marker. Source it, then:
#   binaries=(tool…); gocache_init build-x name "$version"; result=…   (what to print when ready)
#   gocache_ready_or_lock "Name $version"; gocache_find_go 1.26
#   …build into "$staging"…; gocache_publish "Name $version"
# shellcheck shell=bash

gocache_init() {
  script=$1
  cache_root=${PGWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden}
  bin_dir=$cache_root/$2-$3/bin
  log=$cache_root/$2-$3.build.log
  staging=$cache_root/$2-$3/bin.partial
  lock=$cache_root/$2-$3.lock
  jobs=${BUILD_JOBS:-$(nproc)}
  start=$(date +%s)
}

gocache_is_built() {
  [[ -f $bin_dir/.complete ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x $bin_dir/$b ]] || return 1; done
}

# Print $result and exit when the binaries are cached; otherwise hold the per-version lock (waiting while
# another caller builds, then using what it built) and leave an empty staging directory to build into.
gocache_ready_or_lock() {
  if gocache_is_built; then echo "$result"; exit 0; fi
  mkdir -p "$cache_root"
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "$script: another build of $1 is running; waiting for it" >&2
    flock 9
  fi
  if gocache_is_built; then echo "$result"; exit 0; fi
  rm -rf "$staging"
  mkdir -p "$staging"
}

# The Go toolchain fetched from the Go module proxy when the machine has none (the proxy serves Go itself
# as the module golang.org/toolchain), kept beside the binaries it builds.
toolchain_version=${PGWARDEN_GO_TOOLCHAIN:-1.26.8}

gocache_fetch_go() {
  local dir=$cache_root/go-$toolchain_version module=golang.org/toolchain
  local zip=v0.0.1-go$toolchain_version.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64)
  go=$dir/$module@$zip/bin/go
  [[ -x $go ]] && return
  echo "$script: no Go toolchain here; fetching Go $toolchain_version from ${GOPROXY:-https://proxy.golang.org}" >&2
  mkdir -p "$dir"
  curl -fsSL "${GOPROXY:-https://proxy.golang.org}/$module/@v/$zip.zip" -o "$dir/go.zip"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$dir/go.zip" "$dir"
  chmod +x "$dir/$module@$zip/bin/"* "$dir/$module@$zip/pkg/tool/"*/*
  rm -f "$dir/go.zip"
}

# Set $go: $GO, or go on PATH, or /usr/local/go/bin/go, else Go fetched from the module proxy.
gocache_find_go() {
  go=${GO:-$(command -v go || true)}
  [[ -n $go ]] || go=/usr/local/go/bin/go
  [[ -x $go ]] || gocache_fetch_go
  [[ -x $go ]] || { echo "$script: no Go toolchain (looked for \$GO, 'go' on PATH and /usr/local/go/bin/go, and the module proxy failed); install Go >= $1" >&2; exit 1; }
}

gocache_publish() {
  rm -rf "$bin_dir"
  mv "$staging" "$bin_dir"
  touch "$bin_dir/.complete"
  echo "$script: built $1 in $(($(date +%s) - start))s into $bin_dir" >&2
  echo "$result"
}
