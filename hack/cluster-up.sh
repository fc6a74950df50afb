#!/usr/bin/env bash
# Start the local Kubernetes cluster: etcd, kube-apiserver (RBAC + Node authorization, TLS on the Pod
# bridge's address, where Pods and the host reach it), kube-controller-manager, and a real node
# (hack/node-up.sh: containerd, runc, the kubelet and kube-scheduler) with pgwarden's image of the current
# sources and the pause image loaded into containerd. State, certificates, pid files and logs live in
# .local/cluster/ and .local/node/, the admin kubeconfig in .local/kubeconfig (PGWARDEN_LOCAL_DIR moves
# them; see hack/node_env.sh for the bridge each directory uses). Runs as root (containerd, the kubelet).
# Idempotent: when everything already runs, it loads the current image if containerd lacks it and exits 0.
# Prints `image <ref>` (pgwarden's image in containerd) and, when it started the cluster, `cluster ready in`.
set -euo pipefail

# shellcheck source=hack/node_env.sh
source "$(dirname "$0")/node_env.sh"
source "$repo_root/hack/lib/apt-packages.sh"

(($# == 0)) || { echo "usage: $0" >&2; exit 2; }

started_at=$(date +%s)
mkdir -p "$cluster_dir" "$pki_dir"
exec 8>"$cluster_dir/up.lock"
flock 8

log() { echo "cluster: $*" >&2; }
fail() { echo "cluster: ERROR: $*" >&2; exit 1; }
((EUID == 0)) || fail "run as root (the node's containerd and kubelet need it): sudo $0"
apt_packages_ensure cluster-up

control_plane=(etcd kube-apiserver kube-controller-manager)
k8s_bin=$("$repo_root/hack/build-k8s.sh")
kubectl=$k8s_bin/kubectl

readyz() { "$kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; }

all_alive=1
for c in "${control_plane[@]}"; do component_alive "$c" || all_alive=0; done
for c in "${node_components[@]}"; do node_pid "$c" >/dev/null || all_alive=0; done
# A cluster started by an older cluster-up (API server on 127.0.0.1, no node) is started afresh.
grep -qxF "PGWARDEN_APISERVER_HOST=$node_ip" "$cluster_dir/env" 2>/dev/null || all_alive=0
# Every process runs: the cluster is up, however slowly its API server answers on a loaded machine (other
# runs share it; restarting it under them would fail them all), so give /readyz a minute.
ready_while_alive() {
  local i
  for ((i = 0; i < 60; i++)); do
    readyz && return 0
    ((i % 15 == 0)) && log "every component runs but /readyz does not answer yet; waiting"
    sleep 1
  done
  return 1
}
if ((all_alive)) && [[ -f $kubeconfig ]] && ready_while_alive; then
  images=$("$repo_root/hack/node-images.sh")
  echo "cluster already up (KUBECONFIG=$kubeconfig)"
  echo "$images"
  exit 0
else
  if component_alive node-agent; then
    # A cluster from before the real node (hack/node_agent.py): let the test runs using it finish first.
    for ((i = 0; i < 180; i++)); do
      users=$(python3 -c 'import json, os, sys
try:
    pids = json.load(open(sys.argv[1])).get("users", [])
except (OSError, ValueError):
    pids = []
print(" ".join(str(p) for p in pids if os.path.exists(f"/proc/{p}")))' "$local_dir/cluster-tests.json")
      [[ -z $users ]] && break
      ((i % 12 == 0)) && log "an older cluster (node agent) is in use by pids $users; replacing it once they are done"
      sleep 5
    done
    stop_component node-agent >/dev/null
  fi
  # Partly up (a crash, a killed session): clear what is left and start clean.
  "$repo_root/hack/node-down.sh" >/dev/null
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do stop_component "${components[i]}" >/dev/null; done
  pod_network_up

  etcd_bin=${ETCD_BIN:-$(command -v etcd || true)}
  [[ -x $etcd_bin ]] || fail "no etcd binary: install Debian's etcd-server (apt-get install etcd-server; hack/apt-packages.txt lists it) or set ETCD_BIN"
  command -v openssl >/dev/null || fail "openssl is missing: apt-get install openssl"

  etcd_port=$(free_port_at 127.0.0.1 "${PGWARDEN_ETCD_PORT:-$((23790 + port_offset))}")
  etcd_peer_port=$(free_port_at 127.0.0.1 $((etcd_port + 1)))
  apiserver_port=$(free_port_at "$node_ip" "${PGWARDEN_APISERVER_PORT:-$((16443 + port_offset))}")
  kcm_port=$(free_port_at 127.0.0.1 $((apiserver_port + 1)))

  # --- certificates (kept across restarts; regenerated when missing or not for this bridge's address) ---
  if [[ ! -f $pki_dir/.complete ]] || ! grep -qxF "$node_ip" "$pki_dir/.complete"; then
    log "generating certificates and service-account keys in $pki_dir"
    (
      cd "$pki_dir"
      rm -f ./*.crt ./*.key ./*.pub ./*.csr ./*.srl ./*.ext
      openssl_quiet() { openssl "$@" 2>/dev/null; }
      openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
        -subj "/CN=pgwarden-local-ca" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
      # name, subject, extensions
      issue() {
        printf '%s\n' "$3" >"$1.ext"
        openssl_quiet req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
        openssl_quiet x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
          -extfile "$1.ext" -out "$1.crt"
        rm -f "$1.csr" "$1.ext"
      }
      client="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
      issue apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
      issue admin "/O=system:masters/CN=pgwarden-admin" "$client"
      issue controller-manager "/CN=system:kube-controller-manager" "$client"
      # kube-apiserver -> kubelet, for `kubectl logs`.
      issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
      openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
      openssl_quiet pkey -in sa.key -pubout -out sa.pub
      chmod 600 ./*.key
      echo "$node_ip" >.complete
    )
  fi

  # name, client certificate, key, server URL -> kubeconfig on stdout
  write_kubeconfig() {
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pgwarden-local
  cluster:
    server: $4
    certificate-authority: $pki_dir/ca.crt
users:
- name: $1
  user:
    client-certificate: $2
    client-key: $3
contexts:
- name: pgwarden-local
  context: {cluster: pgwarden-local, user: $1}
current-context: pgwarden-local
EOF
  }
  server=https://$node_ip:$apiserver_port
  write_kubeconfig pgwarden-admin "$pki_dir/admin.crt" "$pki_dir/admin.key" "$server" >"$kubeconfig.tmp"
  mv "$kubeconfig.tmp" "$kubeconfig"
  write_kubeconfig kube-controller-manager "$pki_dir/controller-manager.crt" "$pki_dir/controller-manager.key" \
    "$server" >"$cluster_dir/controller-manager.kubeconfig"

  # name, command... : detached from this shell's session so Ctrl-C in a caller does not reach it.
  start() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$cluster_dir/$name.log" 2>&1 8>&- &
    echo $! >"$cluster_dir/$name.pid"
  }
  # what, seconds, component, check command...
  wait_for() {
    local what=$1 seconds=$2 name=$3 i
    shift 3
    for ((i = 0; i < seconds * 5; i++)); do
      "$@" && return 0
      # By pid, not command line: just after the fork the child has not yet become the program.
      process_running "$(<"$cluster_dir/$name.pid")" || { tail -n 20 "$cluster_dir/$name.log" >&2; fail "$name exited; log: $cluster_dir/$name.log"; }
      sleep 0.2
    done
    tail -n 20 "$cluster_dir/$name.log" >&2
    fail "$what not ready after ${seconds}s; log: $cluster_dir/$name.log"
  }

  # --- etcd (fresh data each start: a started cluster is always a clean one) ---
  rm -rf "$cluster_dir/etcd"
  etcd_url=http://127.0.0.1:$etcd_port
  log "starting etcd on $etcd_url"
  start etcd "$etcd_bin" --name pgwarden --data-dir "$cluster_dir/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "pgwarden=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "" --logger zap --log-level warn \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024)) --auto-compaction-mode periodic --auto-compaction-retention 5m
  etcd_healthy() {
    local reply
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$etcd_port" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null) || return 1
    [[ $reply == *'"health":"true"'* ]]
  }
  wait_for "etcd" 30 etcd etcd_healthy

  # --- kube-apiserver ---
  log "starting kube-apiserver on $server"
  start kube-apiserver "$k8s_bin/kube-apiserver" \
    --bind-address="$node_ip" --advertise-address="$node_ip" --secure-port="$apiserver_port" \
    --etcd-servers="$etcd_url" \
    --tls-cert-file="$pki_dir/apiserver.crt" --tls-private-key-file="$pki_dir/apiserver.key" \
    --client-ca-file="$pki_dir/ca.crt" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki_dir/sa.pub" --service-account-signing-key-file="$pki_dir/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --kubelet-client-certificate="$pki_dir/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki_dir/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki_dir/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --endpoint-reconciler-type=none --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 kube-apiserver readyz

  # --- kube-controller-manager ---
  log "starting kube-controller-manager"
  start kube-controller-manager "$k8s_bin/kube-controller-manager" \
    --kubeconfig="$cluster_dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$cluster_dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$cluster_dir/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --controllers='*' --use-service-account-credentials=true --leader-elect=false \
    --service-account-private-key-file="$pki_dir/sa.key" --root-ca-file="$pki_dir/ca.crt" \
    --cluster-signing-cert-file="$pki_dir/ca.crt" --cluster-signing-key-file="$pki_dir/ca.key" \
    --service-cluster-ip-range=10.0.0.0/24 --profiling=false --v=1
  # Its serviceaccount controller creating "default" in each namespace shows it works.
  default_sa() { "$kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1; }
  wait_for "kube-controller-manager (default service account)" 60 kube-controller-manager default_sa

  cat >"$cluster_dir/env" <<EOF
# Written by hack/cluster-up.sh: source it to use the local cluster from a shell.
export KUBECONFIG=$kubeconfig
export PATH=$k8s_bin:\$PATH
PGWARDEN_APISERVER_URL=$server
PGWARDEN_APISERVER_HOST=$node_ip
PGWARDEN_APISERVER_PORT=$apiserver_port
PGWARDEN_ETCD_URL=$etcd_url
PGWARDEN_K8S_BIN=$k8s_bin
EOF
fi

# --- the node, and pgwarden's image of the current sources in its containerd ---
"$repo_root/hack/node-up.sh" >&2
images=$("$repo_root/hack/node-images.sh")
echo "cluster ready in $(($(date +%s) - started_at))s: export KUBECONFIG=$kubeconfig; kubectl is $kubectl"
echo "$images"
