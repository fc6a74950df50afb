#!/usr/bin/env bash
# Stop the real node hack/node-up.sh started and leave no process, mount or network device of it behind:
# its Pods are deleted through the API while the kubelet still runs (so it tears them down properly),
# then kube-scheduler, the kubelet and containerd stop; containers, shims and mounts still left under
# .local/node/ are removed by their private paths (never by a program's name). The bridge stays: the API
# server listens on it, so hack/cluster-down.sh removes it once the control plane is stopped.
#   --purge   also remove .local/node/ (images loaded into containerd, certificates, logs)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/node_env.sh
source hack/node_env.sh

purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done
log() { echo "node: $*" >&2; }
((EUID == 0)) || { echo "node: run as root: sudo $0" >&2; exit 1; }
if [[ ! -d $node_dir ]]; then
  echo "node: nothing to stop"
  exit 0
fi

stop_node_component() { # name, grace seconds
  local pid i
  if pid=$(node_pid "$1"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do
      process_running "$pid" || break
      sleep 0.1
    done
    if process_running "$pid"; then
      log "$1 (pid $pid) ignored SIGTERM for $2s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "node: stopped $1 (pid $pid)"
  fi
  rm -f "$node_dir/$1.pid"
}

# No new Pods from here on; the kubelet tears down the ones it runs while the API still answers.
stop_node_component kube-scheduler 10
if [[ -f $cluster_dir/env ]] && node_pid kubelet >/dev/null; then
  # shellcheck disable=SC1091
  source "$cluster_dir/env"
  kubectl=$PGWARDEN_K8S_BIN/kubectl
  if "$kubectl" get --raw /readyz >/dev/null 2>&1; then
    "$kubectl" delete pods --all-namespaces --field-selector "spec.nodeName=$node_name" \
      --grace-period=5 --timeout=60s --ignore-not-found >/dev/null 2>&1 ||
      log "some Pods were not deleted in 60s; stopping their containers directly"
    "$kubectl" delete node "$node_name" --ignore-not-found >/dev/null 2>&1 || true
  fi
fi
stop_node_component kubelet 20

# What the kubelet left (it was killed, or the API was gone): every container in runc's private root.
runc_root=$node_dir/containerd/runc/k8s.io
if [[ -d $runc_root ]]; then
  for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
    runc --root "$runc_root" kill "$id" KILL 2>/dev/null || true
    runc --root "$runc_root" delete --force "$id" 2>/dev/null || true
  done
fi
stop_node_component containerd 20
# Shims whose containers were deleted exit by themselves; any still here belong to this node's socket.
for ((i = 0; i < 50; i++)); do
  [[ -z $(node_stray_pids) ]] && break
  sleep 0.1
done
for pid in $(node_stray_pids); do
  log "stopping leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-120)"
  kill -KILL "$pid" 2>/dev/null || true
done

for m in $(node_mounts); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
done
rm -f "$node_dir/env"
if ((purge)); then
  rm -rf "$node_dir"
  echo "node: removed $node_dir"
fi
echo "node down"
