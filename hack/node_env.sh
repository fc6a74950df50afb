# shellcheck shell=bash disable=SC2034
# Shared by cluster-up.sh, cluster-down.sh, node-up.sh and node-down.sh: where the real node (containerd,
# kubelet, kube-scheduler) keeps its state beside the control plane, and its network. Everything stays on
# this machine: the bridge has no route out and no masquerade; the API server, the kubelet and the servers
# Pods use (the tests' and the demo's PostgreSQL and MinIO) listen on 127.0.0.1 or the bridge's address.
# Each state directory (PGWARDEN_LOCAL_DIR: a checkout's .local for its tests, .local/demo, .local/node-smoke)
# has a bridge and a /24 of its own, so two checkouts on one machine never share one (nor does one's
# teardown delete the other's bridge). Which: PGWARDEN_NODE_BRIDGE and PGWARDEN_NODE_SUBNET_PREFIX when set;
# else what cluster-up recorded in $local_dir/network (the one source every reader uses, the tests and the
# demo too); else derived from the directory's path: bridge pgw-<8 hex of its hash> (Linux names are at most
# 15 characters), subnet 10.217.<16..255> starting at the hash and skipping any another device already has
# (10.217.0-15 are left for choosing by hand).

# shellcheck source=hack/cluster_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster_env.sh"

node_dir=$local_dir/node
node_name=${PGWARDEN_NODE_NAME:-pgwarden-node}
network_file=$local_dir/network

# The value of $1 recorded in the network file, if any.
recorded_network() { { sed -n "s/^$1=//p" "$network_file" 2>/dev/null || true; } | tail -n 1; }

# Subnets (a.b.c) that devices other than bridge $1 have an IPv4 address in.
subnets_in_use() { ip -o -4 addr show 2>/dev/null | awk -v b="$1" '$2 != b { split($4, a, "."); print a[1] "." a[2] "." a[3] }'; }

# A free 10.217.<16..255> subnet for bridge $1, starting from the hash $2 (hex).
derived_subnet() {
  local used n i
  used=$(subnets_in_use "$1")
  n=$((16 + 16#${2:0:8} % 240))
  for ((i = 0; i < 240; i++)); do
    grep -qxF "10.217.$n" <<<"$used" || { echo "10.217.$n"; return 0; }
    n=$((16 + (n - 16 + 1) % 240))
  done
  echo "node_env: no free subnet in 10.217.16-255.0/24; set PGWARDEN_NODE_SUBNET_PREFIX" >&2
  return 1
}

path_hash=$(printf '%s' "$local_dir" | sha256sum | cut -c1-8)
# Where each directory's search for free ports starts (0-1990, in tens): two clusters coming up at the same
# moment would otherwise both find the same loopback port free and race to bind it.
port_offset=$((16#${path_hash:4:4} % 200 * 10))
bridge=${PGWARDEN_NODE_BRIDGE:-$(recorded_network PGWARDEN_NODE_BRIDGE)}
bridge=${bridge:-pgw-$path_hash}
# Pods get .2-.254; the bridge (the node's address, where the API server and host servers for pods
# listen) has .1.
subnet_prefix=${PGWARDEN_NODE_SUBNET_PREFIX:-$(recorded_network PGWARDEN_NODE_SUBNET_PREFIX)}
subnet_prefix=${subnet_prefix:-$(derived_subnet "$bridge" "$path_hash")}
node_ip=$subnet_prefix.1

# Record the bridge and subnet in use (cluster-up, before it makes the bridge): later scripts and the
# tests read them from here, whatever the machine's other devices do meanwhile.
record_network() {
  mkdir -p "$local_dir"
  printf 'PGWARDEN_NODE_BRIDGE=%s\nPGWARDEN_NODE_SUBNET_PREFIX=%s\n' "$bridge" "$subnet_prefix" >"$network_file"
}
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
  local taken
  taken=$(ip -o -4 addr show 2>/dev/null | awk -v b="$bridge" -v p="$subnet_prefix." '$2 != b && index($4, p) == 1 { print $2 }')
  if [[ -n $taken ]]; then
    echo "node_env: subnet $subnet_prefix.0/24 is in use by $taken; choose another (PGWARDEN_NODE_SUBNET_PREFIX=a.b.c) or remove $network_file" >&2
    return 1
  fi
  record_network
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
