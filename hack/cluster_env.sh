# shellcheck shell=bash disable=SC2034
# Shared by cluster-up.sh and cluster-down.sh (through node_env.sh): where the control plane keeps its state,
# and how to find, check and stop the processes it started (by pid file, never by name).

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_dir=${PGWARDEN_LOCAL_DIR:-$repo_root/.local}
cluster_dir=$local_dir/cluster
pki_dir=$cluster_dir/pki
kubeconfig=$local_dir/kubeconfig
venv_python=$repo_root/.venv/bin/python
# Start order; cluster-down stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager)

# The pid of a component we started, if that process still runs the program we started.
component_pid() {
  local name=$1 pidfile=$cluster_dir/$1.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # Guard against pid reuse: the command line must still name the component.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "${name/node-agent/node_agent}" || return 1
  echo "$pid"
}

component_alive() { component_pid "$1" >/dev/null; }

# Whether process $1 exists and has not exited (a zombie has exited; its parent will reap it).
process_running() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# SIGTERM, wait up to $2 seconds (default 15), then SIGKILL; removes the pid file.
stop_component() {
  local name=$1 grace=${2:-15} pid i
  if pid=$(component_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      process_running "$pid" || break
      sleep 0.1
    done
    if process_running "$pid"; then
      echo "cluster: $name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "cluster: stopped $name (pid $pid)"
  fi
  rm -f "$cluster_dir/$name.pid"
}
