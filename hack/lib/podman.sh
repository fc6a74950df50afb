# Shared by the image scripts: podman with a private store under ~/.cache/pgwarden/podman (never the
# machine's /var/lib/containers), runc (crun cannot run here: "cgroups in hybrid mode"), cgroupfs, and
# the docker image format (OCI has no SHELL, which the Dockerfile relies on), ulimits within this sandbox's hard limits (it lacks CAP_SYS_RESOURCE, so podman's defaults are refused).
#   source hack/lib/podman.sh; pgw_podman images; pgw_podman build "${pgw_build_flags[@]}" …
# shellcheck shell=bash

pgw_podman_store=${PGWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden}/podman
pgw_build_flags=(--format=docker --pull=never --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

pgw_podman() {
  podman --root "$pgw_podman_store/root" --runroot "$pgw_podman_store/run" --runtime /usr/sbin/runc \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
