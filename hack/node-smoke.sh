#!/usr/bin/env bash
# Proof that the real node runs pgwarden's image as its Jobs run it: a cluster (hack/cluster-up.sh: control
# plane and node) in a directory and on a bridge of its own (hack/node_env.sh), one Job Pod with the
# restricted securityContext (non-root 65532, read-only root filesystem, no capabilities, RuntimeDefault
# seccomp, a secretKeyRef variable, imagePullPolicy Never) that runs the client tools and pgwarden, its
# termination message read back from the Pod status. Everything is torn down at the end, and the script
# fails if a process, mount or network device of it is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGWARDEN_LOCAL_DIR=${PGWARDEN_LOCAL_DIR:-$PWD/.local/node-smoke}
# shellcheck source=hack/node_env.sh
source hack/node_env.sh

say() { echo "node-smoke: $*" >&2; }
((EUID == 0)) || { say "run as root (containerd and the kubelet need it): sudo $0"; exit 1; }
namespace=node-smoke

teardown() {
  local status=$? leftovers
  say "tearing down"
  hack/cluster-down.sh --purge >&2 || status=1
  leftovers=$(
    node_stray_pids | sed 's/^/process /'
    for p in /proc/[0-9]*; do
      { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$local_dir/" && echo "process ${p#/proc/}"
    done
    awk -v d="$local_dir/" 'index($5, d) == 1 { print "mount " $5 }' /proc/self/mountinfo
    ip -o link show | awk -F': ' -v b="$bridge" '$2 == b || $2 ~ "@" b "$" { print "network device " $2 }'
    true
  )
  if [[ -n $leftovers ]]; then
    say "left behind:"
    echo "$leftovers" >&2
    status=1
  else
    say "nothing left behind (no process, mount or network device of the node)"
  fi
  exit "$status"
}
trap teardown EXIT

t0=$(date +%s)
hack/cluster-up.sh >&2
# shellcheck source=hack/node_env.sh
source hack/node_env.sh # the bridge and subnet cluster-up recorded
t2=$(date +%s)
say "cluster (control plane and node) up in $((t2 - t0))s"
# shellcheck disable=SC1091
source "$cluster_dir/env"
# shellcheck disable=SC1091
source "$node_dir/env"
kubectl=$PGWARDEN_K8S_BIN/kubectl

"$kubectl" create namespace "$namespace" >/dev/null
# A value the Pod must receive but never print: the smoke checks only its length.
"$kubectl" -n "$namespace" create secret generic smoke-db --from-literal=password="$(head -c 18 /dev/urandom | base64)" >/dev/null
"$kubectl" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: pgwarden-smoke, namespace: $namespace}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 180
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: pgwarden
        image: $PGWARDEN_IMAGE
        imagePullPolicy: Never
        command: [/bin/bash, -c]
        args:
        - |
          set -eu
          bin=\$PGWARDEN_PG_BIN
          if touch /probe 2>/dev/null; then echo "the root filesystem is writable"; exit 1; fi
          # The Pod network stays on this machine: a route to the bridge's subnet, none out.
          if awk 'NR > 1 && \$2 == "00000000" { found = 1 } END { exit !found }' /proc/net/route; then
            echo "the Pod has a default route"; exit 1
          fi
          {
            "\$bin/pg_dump" --version
            "\$bin/pg_restore" --version
            "\$bin/psql" --version
            pgwarden --version
            echo "uid=\$(id -u) secret=\${#PGPASSWORD} chars, read-only root, no default route"
          } | tee /dev/termination-log
        env:
        - name: PGPASSWORD
          valueFrom: {secretKeyRef: {name: smoke-db, key: password}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
EOF
say "Job pgwarden-smoke created; waiting for it to complete"
if ! "$kubectl" -n "$namespace" wait --for=condition=Complete job/pgwarden-smoke --timeout=180s >/dev/null; then
  "$kubectl" -n "$namespace" get pods -o wide >&2 || true
  "$kubectl" -n "$namespace" describe pods >&2 || true
  say "the Job did not complete; node logs in $node_dir (kept until the teardown)"
  tail -n 30 "$node_dir/kubelet.log" >&2
  exit 1
fi
t3=$(date +%s)
pod=$("$kubectl" -n "$namespace" get pods -l job-name=pgwarden-smoke -o 'jsonpath={.items[0].metadata.name}')
message=$("$kubectl" -n "$namespace" get pod "$pod" \
  -o 'jsonpath={.status.containerStatuses[0].state.terminated.message}')
say "Pod $pod on node $("$kubectl" -n "$namespace" get pod "$pod" -o 'jsonpath={.spec.nodeName}') ($("$kubectl" -n "$namespace" get pod "$pod" -o 'jsonpath={.status.podIP}')) completed in $((t3 - t2))s; termination message from the Pod status:"
echo "$message"
say "kubectl logs (through the kubelet on $PGWARDEN_NODE_IP):"
"$kubectl" -n "$namespace" logs "$pod" >&2
for expected in "pg_dump (PostgreSQL) 18." "pg_restore (PostgreSQL) 18." "psql (PostgreSQL) 18." "pgwarden " "uid=65532 secret=24 chars, read-only root, no default route"; do
  [[ $message == *"$expected"* ]] || { say "the termination message lacks '$expected'"; exit 1; }
done
say "passed: restricted Job Pod ran pgwarden's image on the real node"
