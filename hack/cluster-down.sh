#!/usr/bin/env bash
# Stop what hack/cluster-up.sh started, newest first, and leave no process, mount or network device of it
# behind: the node (hack/node-down.sh: its Pods, kube-scheduler, the kubelet, containerd, their mounts),
# then kube-controller-manager, kube-apiserver and etcd (by the pids recorded in .local/cluster/), then
# the bridge the API server listened on.
#   --purge   also remove .local/cluster/, .local/node/ (certificates, logs, etcd data, images loaded
#             into containerd), .local/kubeconfig and .local/network (the bridge and subnet it chose)
set -euo pipefail

# shellcheck source=hack/node_env.sh
source "$(dirname "$0")/node_env.sh"

purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done

((EUID == 0)) || { echo "cluster: run as root: sudo $0" >&2; exit 1; }
if [[ ! -d $cluster_dir && ! -d $node_dir ]]; then
  pod_network_down
  echo "cluster: nothing to stop"
  exit 0
fi
mkdir -p "$cluster_dir"
exec 8>"$cluster_dir/up.lock"
flock 8

# The node first: the kubelet tears its Pods down while the API they report to still answers.
node_args=()
((purge)) && node_args+=(--purge)
"$repo_root/hack/node-down.sh" "${node_args[@]}"
for ((i = ${#components[@]} - 1; i >= 0; i--)); do
  stop_component "${components[i]}" 20
done
pod_network_down
if ((purge)); then
  rm -rf "$cluster_dir" "$kubeconfig" "$network_file"
  echo "cluster: removed $cluster_dir"
fi
echo "cluster down"
