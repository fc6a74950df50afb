# Make sure the Debian packages in hack/apt-packages.txt are installed. As root, install the missing ones
# (apt-get); otherwise stop at once and print the one command that installs them.
#   source hack/lib/apt-packages.sh; apt_packages_ensure script-name
# shellcheck shell=bash

apt_packages_ensure() {
  local script=$1 list pkg missing=()
  list=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt-packages.txt
  while read -r pkg; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done <"$list"
  ((${#missing[@]})) || return 0
  if ((EUID != 0)); then
    echo "$script: missing Debian packages; run this once, then again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "$script: installing ${missing[*]} (from $list)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql starts a cluster of its own; the tests and the demo start their own servers.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_ctlcluster >/dev/null; then
    service postgresql stop >/dev/null 2>&1 || true
  fi
}
