#!/usr/bin/env bash
# Stop what hack/cluster-up.sh started (by the pids it recorded in .local/cluster/), newest first.
#   --purge   also remove .local/cluster/ (certificates, logs, etcd data) and .local/kubeconfig
set -euo pipefail

# shellcheck source=hack/cluster_env.sh
source "$(dirname "$0")/cluster_env.sh"

purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done

if [[ ! -d $cluster_dir ]]; then
  echo "cluster: nothing to stop"
  exit 0
fi
exec 8>"$cluster_dir/up.lock"
flock 8

# The node agent first: it stops its pods' processes before the API they report to goes away.
for ((i = ${#components[@]} - 1; i >= 0; i--)); do
  stop_component "${components[i]}" 20
done
if ((purge)); then
  rm -rf "$cluster_dir" "$kubeconfig"
  echo "cluster: removed $cluster_dir"
fi
echo "cluster down"
