#!/usr/bin/env bash
# Install the Debian packages of hack/apt-packages.txt that are missing (as root), or stop at once printing
# the one command that installs them. `make demo`, `make test` and hack/cluster-up.sh run it first.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib/apt-packages.sh
apt_packages_ensure "${1:-install-packages}"
