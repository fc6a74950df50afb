#!/usr/bin/env bash
# Make the image's Debian base with mmdebstrap from Debian's archive (no registry image needed), once per
# recipe, into ~/.cache/pgwarden/images/debian-<suite>-<key>/rootfs.tar, and import it into pgwarden's
# podman store as localhost/pgwarden-base:<suite>-<key>. Prints that image name on the last line of stdout.
# Debian's security fixes arrive with a new base: PGWARDEN_IMAGE_REFRESH=1 rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/apt-packages.sh
source hack/lib/imagecache.sh
source hack/lib/podman.sh

suite=bookworm
# python3 and tzdata for pgwarden (the operator checks CronJob time zones), useradd from passwd.
packages=python3,ca-certificates,tzdata,passwd
mirrors=(
  "deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main"
)
# No manuals, docs (but their copyright files) or translations: the image never shows them.
options=(
  --variant=apt --include="$packages" --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
)

((EUID == 0)) || { echo "build-base: run as root (mmdebstrap and podman build here as root): sudo $0" >&2; exit 1; }
key=$(imagecache_key hack/build-base.sh -- "$suite" "${mirrors[@]}" "${options[@]}")
imagecache_init build-base "debian-$suite" "$key"
name=localhost/pgwarden-base:$suite-$key

if imagecache_must_build "the Debian $suite base"; then
  apt_packages_ensure build-base
  echo "build-base: mmdebstrap $suite ($packages), about a minute" >&2
  mmdebstrap --quiet "${options[@]}" "$suite" "$staging/rootfs.tar" "${mirrors[@]}" >&2
  pgw_podman rmi --force "$name" >/dev/null 2>&1 || true
  imagecache_publish "the Debian $suite base"
fi
# The tarball may be cached while the podman store was wiped: importing again takes seconds.
pgw_podman image exists "$name" || pgw_podman import --quiet "$image_dir/rootfs.tar" "$name" >/dev/null
echo "$name"
