#!/usr/bin/env bash
# Start the real node beside the control plane of hack/cluster-up.sh (which runs this script): containerd
# (private root, state and socket) with runc and a CNI bridge, the kubelet and kube-scheduler v1.37 built
# from hack/k8s, with pgwarden's image (make image) and the pause image loaded (hack/node-images.sh).
# Waits for the node to be Ready. State, certificates, pid files and logs live in .local/node/;
# hack/node-down.sh undoes it all. The network stays on this machine: the bridge (hack/node_env.sh chooses
# its name and /24 per state directory) has no route out and no masquerade; Pods reach the bridge address
# (where the API server and the host servers for them listen) and each other only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/node_env.sh
source hack/node_env.sh
source hack/lib/apt-packages.sh

log() { echo "node: $*" >&2; }
fail() { echo "node: ERROR: $*" >&2; exit 1; }
((EUID == 0)) || fail "run as root (containerd and the kubelet need it): sudo $0"
started_at=$(date +%s)

[[ -f $cluster_dir/env ]] && [[ -f $kubeconfig ]] || fail "no control plane in $cluster_dir: run hack/cluster-up.sh"
# shellcheck disable=SC1091
source "$cluster_dir/env"
kubectl=$PGWARDEN_K8S_BIN/kubectl
"$kubectl" get --raw /readyz >/dev/null 2>&1 || fail "the control plane at $PGWARDEN_APISERVER_URL is not ready: run hack/cluster-up.sh"

mkdir -p "$node_dir"
exec 7>"$node_dir/up.lock"
flock 7
all_alive=1
for c in "${node_components[@]}"; do node_pid "$c" >/dev/null || all_alive=0; done
if ((all_alive)); then
  echo "node $node_name already up (containerd at $containerd_sock)"
  exit 0
fi
# Partly up (a crash, a killed session): clear what is left and start clean.
hack/node-down.sh >/dev/null

apt_packages_ensure node-up
log "building or finding the kubelet, kube-scheduler, pgwarden's image and the pause image"
node_bin=$(hack/build-k8s.sh --node)
# Built here, loaded once containerd runs: containerd needs the pause image's name in its configuration.
hack/build-image.sh >/dev/null
pause_archive=$(hack/build-pause.sh)
pause_ref=$(<"$(dirname "$pause_archive")/ref")

kubelet_port=$(free_port_at "$node_ip" "${PGWARDEN_KUBELET_PORT:-20250}")
healthz_port=$(free_port_at 127.0.0.1 "${PGWARDEN_KUBELET_HEALTHZ_PORT:-$((20251 + port_offset))}")
scheduler_port=$(free_port_at 127.0.0.1 $((healthz_port + 1)))

# --- certificates, signed by the control plane's CA: the kubelet as a node (NodeRestriction), its
# serving certificate for the bridge address (kube-apiserver checks it for `kubectl logs`), the scheduler.
pki=$node_dir/pki
mkdir -p "$pki"
issue() { # name, subject, extensions
  printf '%s\n' "$3" >"$pki/$1.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki_dir/ca.crt" -CAkey "$pki_dir/ca.key" -CAcreateserial \
    -CAserial "$pki/ca.srl" -days 30 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
  rm -f "$pki/$1.csr" "$pki/$1.ext"
  chmod 600 "$pki/$1.key"
}
client="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
issue kubelet-client "/O=system:nodes/CN=system:node:$node_name" "$client"
issue kubelet-serving "/CN=$node_name" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,DNS:$node_name"
issue kube-scheduler "/CN=system:kube-scheduler" "$client"
write_kubeconfig() { # user, certificate name
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pgwarden-local
  cluster: {server: $PGWARDEN_APISERVER_URL, certificate-authority: $pki_dir/ca.crt}
users:
- name: $1
  user: {client-certificate: $pki/$2.crt, client-key: $pki/$2.key}
contexts:
- name: pgwarden-local
  context: {cluster: pgwarden-local, user: $1}
current-context: pgwarden-local
EOF
}
write_kubeconfig "system:node:$node_name" kubelet-client >"$node_dir/kubelet.kubeconfig"
write_kubeconfig system:kube-scheduler kube-scheduler >"$node_dir/kube-scheduler.kubeconfig"

# --- the Pods' network: the bridge (made by cluster-up before the API server) and a CNI configuration.
# isGateway false: the CNI plugin then leaves the bridge's address and the machine's ip_forward alone,
# and Pods get only the route to their own subnet.
pod_network_up
mkdir -p "$node_dir/cni" "$node_dir/cni-ipam"
cat >"$node_dir/cni/10-pgwarden.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pgwarden", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$node_dir/cni-ipam",
            "ranges": [[{"subnet": "$subnet_prefix.0/24", "rangeStart": "$subnet_prefix.2",
                         "rangeEnd": "$subnet_prefix.254", "gateway": "$node_ip"}]]}}
]}
EOF

start() { # name, command...
  local name=$1
  shift
  setsid "$@" </dev/null >"$node_dir/$name.log" 2>&1 7>&- 8>&- &
  echo $! >"$node_dir/$name.pid"
}
wait_for() { # what, seconds, component, check command...
  local what=$1 seconds=$2 name=$3 i
  shift 3
  for ((i = 0; i < seconds * 5; i++)); do
    "$@" && return 0
    process_running "$(<"$node_dir/$name.pid")" || { tail -n 20 "$node_dir/$name.log" >&2; fail "$name exited; log: $node_dir/$name.log"; }
    sleep 0.2
  done
  tail -n 20 "$node_dir/$name.log" >&2
  fail "$what not ready after ${seconds}s; log: $node_dir/$name.log"
}

# --- containerd: the settings that work in this sandbox (no CAP_SYS_RESOURCE: restrict_oom_score_adj;
# crun cannot run here: runc; no systemd: cgroupfs), everything it keeps under .local/node/containerd.
cd_dir=$node_dir/containerd
mkdir -p "$cd_dir"
cat >"$cd_dir/config.toml" <<EOF
version = 2
root = "$cd_dir/root"
state = "$cd_dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$containerd_sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$cd_dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "$cd_dir/runc"
  SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$node_dir/cni"
  max_conf_num = 1
EOF
log "starting containerd at $containerd_sock"
ctr() { command ctr --address "$containerd_sock" --namespace k8s.io "$@"; }
start containerd containerd --config "$cd_dir/config.toml"
containerd_answers() { ctr version >/dev/null 2>&1; }
wait_for "containerd" 30 containerd containerd_answers
images=$(hack/node-images.sh)
image_ref=$(awk '$1 == "image" { print $2 }' <<<"$images")

# --- kubelet: the configuration that works here (cgroup v1 hybrid, no QoS cgroups, no swap check),
# webhook authentication and authorization against the control plane, listening on the bridge only.
mkdir -p "$node_dir/kubelet" "$node_dir/pod-logs"
cat >"$node_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki_dir/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$containerd_sock
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
podLogsDir: $node_dir/pod-logs
volumePluginDir: $node_dir/kubelet/volume-plugins
maxPods: 30
EOF
log "starting the kubelet (node $node_name, $node_ip:$kubelet_port)"
start kubelet "$node_bin/kubelet" --config "$node_dir/kubelet.yaml" --kubeconfig "$node_dir/kubelet.kubeconfig" \
  --hostname-override "$node_name" --node-ip "$node_ip" --root-dir "$node_dir/kubelet" \
  --cert-dir "$node_dir/kubelet/pki" --v=1
node_ready() {
  [[ $("$kubectl" get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
wait_for "node $node_name Ready" 120 kubelet node_ready

log "starting kube-scheduler on 127.0.0.1:$scheduler_port"
start kube-scheduler "$node_bin/kube-scheduler" --kubeconfig "$node_dir/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$node_dir/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig "$node_dir/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false --v=1
scheduler_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$scheduler_port") 2>/dev/null; }
wait_for "kube-scheduler" 60 kube-scheduler scheduler_listening

cat >"$node_dir/env" <<EOF
# Written by hack/node-up.sh: the real node beside the control plane.
PGWARDEN_NODE_NAME=$node_name
PGWARDEN_NODE_IP=$node_ip
PGWARDEN_IMAGE=$image_ref
PGWARDEN_PAUSE_IMAGE=$pause_ref
EOF
echo "node $node_name Ready in $(($(date +%s) - started_at))s (image $image_ref; KUBECONFIG=$kubeconfig)"
