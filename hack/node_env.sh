# shellcheck shell=bash disable=SC2034
# Shared by cluster-up.sh, cluster-down.sh, node-up.sh and node-down.sh: where the real node (containerd,
# kubelet, kube-scheduler) keeps its state beside the control plane, and its network. Everything stays on
# this machine: the bridge has no route out and no masquerade; the API server, the kubelet and the servers
# Pods use (the tests' and the demo's PostgreSQL and MinIO) listen on 127.0.0.1 or the bridge's address.
# Each state directory (PGWARDEN_LOCAL_DIR) needs a bridge and subnet of its own: the tests use pgw0 with
# 10.217.0.0/24, `make demo` pgw1 with 10.217.1.0/24, make node-smoke pgw2 with 10.217.2.0/24.

# shellcheck source=hack/cluster_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster_env.sh"

node_dir=$local_dir/node
node_name=${PGWARDEN_NODE_NAME:-pgwarden-node}
bridge=${PGWARDEN_NODE_BRIDGE:-pgw0}
# Pods get .2-.254; the bridge (the node's address, where the API server and host servers for pods
# listen) has .1.
subnet_prefix=${PGWARDEN_NODE_SUBNET_PREFIX:-10.217.0}
node_ip=$subnet_prefix.1
containerd_sock=$node_dir/containerd/containerd.sock
# Start order; node-down stops them in reverse.
node_components=(containerd kubelet kube-scheduler)

# The pid of a node component we started, if that process still runs the program we started.
node_pid() {
  local pidfile=$node_dir/$1.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1" || return 1
  echo "$pid"
}

# Processes whose command line names this node's private directory (containerd's shims and what runs
# under them), found by that unique path and never by a program's name.
node_stray_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" ]] && continue
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$node_dir/" && echo "${p#/proc/}"
  done
  return 0
}

# Mount points under the node's directory, deepest first.
node_mounts() { awk -v d="$node_dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }

# The bridge with the node's address: made before the API server, which listens on it, and before the
# kubelet. No route out of the subnet and no masquerade; ip_forward is left as it is.
pod_network_up() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  [[ $(ip -o addr show dev "$bridge") == *" $node_ip/24 "* ]] || ip addr add "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
}

# Deleting the bridge also removes whatever veth of a Pod sandbox is still attached to it.
pod_network_down() {
  if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
}

# A port nobody listens on at address $1, starting from $2 (bash's /dev/tcp connects only when something
# listens).
free_port_at() {
  local host=$1 port=$2
  while (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}
