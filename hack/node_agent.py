#!/usr/bin/env python3
"""A kubelet stand-in for the local control plane: one Ready Node whose Pods run as local processes.

There is no container runtime and no kube-scheduler here. This agent registers a Node and keeps its
Lease fresh, binds pending Pods to it, and runs each Pod's init containers and containers as local
processes in a bubblewrap sandbox whose bind mounts put ConfigMap, Secret, emptyDir, projected and
downward-API volumes (and the termination-message file) at their mount paths. It reports Pod status
the way a kubelet does, kills processes when a Pod is deleted, and serves container logs to
`kubectl logs`. Images are ignored: commands run from this machine, with the project's venv first on
PATH (so `pgwarden` and `python` are the project's). Secret values are never logged.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import http.server
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

log = logging.getLogger("node-agent")

Obj = dict[str, Any]
POD_IP = "127.0.0.1"
TERMINATION_MESSAGE_CAP = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPO = str(Path(__file__).resolve().parents[1])
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------------
# API access: plain JSON over the kubernetes client's configured connection pool.


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        try:
            self.message = str(json.loads(body).get("message", body))
        except ValueError:
            self.message = body
        super().__init__(f"HTTP {status}: {self.message}")


class Kube:
    """JSON requests and watch streams against the API server named in a kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
        self.host = configuration.host.rstrip("/")
        self._client = kubernetes.client.ApiClient(configuration)
        self._pool: urllib3.PoolManager = self._client.rest_client.pool_manager
        self._headers = {"Accept": "application/json"}
        settings: dict[str, Any] = dict(configuration.auth_settings())
        for setting in settings.values():
            self._headers[setting["key"]] = setting["value"]

    def _url(self, path: str, query: dict[str, str] | None) -> str:
        return self.host + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        response = self._pool.request(
            method, self._url(path, query), body=data, headers=headers, timeout=urllib3.Timeout(total=timeout)
        )
        text = response.data.decode("utf-8", "replace")
        if not 200 <= response.status < 300:
            raise ApiError(response.status, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **query: str) -> Obj:
        return self.request("GET", path, query=query or None)

    def watch(self, path: str, query: dict[str, str], timeout: int) -> Iterator[Obj]:
        """Yield watch events until the server ends the watch (after about `timeout` seconds)."""
        query = {**query, "watch": "1", "timeoutSeconds": str(timeout), "allowWatchBookmarks": "true"}
        response = self._pool.request(
            "GET",
            self._url(path, query),
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout + 30),
        )
        try:
            if response.status != 200:
                raise ApiError(response.status, response.data.decode("utf-8", "replace"))
            pending = b""
            for chunk in response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()


def list_and_watch(
    kube: Kube,
    path: str,
    query: dict[str, str],
    on_list: Callable[[list[Obj]], None],
    on_event: Callable[[str, Obj], None],
    stop: threading.Event,
    what: str,
) -> None:
    """List, then watch from the list's resourceVersion; relist on expiry; retry on any error."""
    while not stop.is_set():
        try:
            listing = kube.get(path, **query)
            on_list(listing.get("items", []))
            version = listing["metadata"]["resourceVersion"]
            while not stop.is_set():
                for event in kube.watch(path, {**query, "resourceVersion": version}, timeout=60):
                    obj = event.get("object", {})
                    if event.get("type") == "ERROR":
                        raise ApiError(int(obj.get("code", 500)), json.dumps(obj))
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
                    if stop.is_set():
                        return
        except ApiError as error:
            if error.status != 410:
                log.warning("%s watch failed (%s); restarting", what, error)
                stop.wait(1)
        except Exception as error:
            log.warning("%s watch failed (%s: %s); restarting", what, type(error).__name__, error)
            stop.wait(1)


# --------------------------------------------------------------------------------------------------
# Sandboxing: how a container's processes see its volumes at their mount paths.


@dataclasses.dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


def detect_sandbox() -> str | None:
    """'bwrap' or 'unshare' when it can bind-mount here, else None."""
    if shutil.which("bwrap"):
        probe = subprocess.run(
            ["bwrap", "--bind", "/", "/", "--dev", "/dev", "true"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return "bwrap"
        log.warning("bwrap cannot sandbox here: %s", probe.stderr.decode(errors="replace").strip())
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return "unshare"
    return None


def _deepest_existing(path: str) -> str:
    current = Path(path)
    while not os.path.lexists(current):
        current = current.parent
    return str(current)


def bwrap_command(
    mounts: list[Mount], workdir: str | None, argv: list[str], keep_visible: tuple[str, ...] = ()
) -> list[str]:
    """A bwrap command line: the host's root bound entry by entry, then the pod's mounts on top.

    bwrap creates missing mount points in whatever filesystem holds them. So that nothing is created
    on the host, a host directory that must gain a mount point is first shadowed by a tmpfs into
    which its entries are bound back. Directories in `keep_visible` (the project and its venv: the
    "image") are bound again over any volume mounted on one of their parents.
    """
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--proc", "/proc", "--dev", "/dev"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in ("proc", "dev"):
            continue
        if entry.is_symlink():
            args += ["--symlink", str(entry.readlink()), str(entry)]
        elif entry.is_dir():
            args += ["--bind", str(entry), str(entry)]
        else:
            args += ["--ro-bind", str(entry), str(entry)]

    placed: list[str] = []  # mount targets so far: creating a mount point inside them is harmless
    shadowed: set[str] = set()

    def prepare(target: str) -> None:
        if os.path.lexists(target) or target.startswith(("/dev/", "/proc/")):
            return
        if any(target.startswith(p.rstrip("/") + "/") for p in placed):
            return
        parent = _deepest_existing(target)
        if parent == "/" or parent in shadowed:
            return
        shadowed.add(parent)
        args.extend(["--tmpfs", parent])
        for child in sorted(Path(parent).iterdir()):
            if child.is_symlink():
                args.extend(["--symlink", str(child.readlink()), str(child)])
            else:
                args.extend(["--bind", str(child), str(child)])

    def resolve(target: str) -> str:
        # /var/run/secrets/... lives under /run when /var/run is a symlink: mount where it really is.
        return os.path.realpath(target) if not target.startswith("/dev/") else target

    for mount in sorted(mounts, key=lambda m: resolve(m.target).count("/")):
        target = resolve(mount.target)
        prepare(target)
        args.extend(["--ro-bind" if mount.read_only else "--bind", str(mount.source), target])
        placed.append(target)
    for directory in keep_visible:
        if any(directory == p or directory.startswith(p.rstrip("/") + "/") for p in placed):
            args.extend(["--bind", directory, directory])
    if workdir:
        args.extend(["--chdir", workdir])
    return [*args, "--", *argv]


def unshare_command(mounts: list[Mount], workdir: str | None, argv: list[str]) -> list[str]:
    """Fallback without bubblewrap: a private mount namespace. Mount points are created on the host."""
    lines = ["set -e", "mount --make-rprivate /"]
    for mount in sorted(mounts, key=lambda m: m.target.count("/")):
        make = "mkdir -p" if mount.source.is_dir() else "mkdir -p \"$(dirname '{t}')\" && touch"
        target = mount.target
        lines.append(f"{make.format(t=target)} '{target}'")
        lines.append(f"mount --bind '{mount.source}' '{target}'")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro '{target}'")
    if workdir:
        lines.append(f"cd '{workdir}'")
    lines.append('exec "$@"')
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(lines), "container", *argv]


# --------------------------------------------------------------------------------------------------
# Pod configuration: env, volumes and $(VAR) expansion, resolved from the API like the kubelet does.


class ConfigError(Exception):
    """A referenced Secret, ConfigMap or key is missing: the kubelet's CreateContainerConfigError."""


class MountError(Exception):
    """A volume cannot be set up yet: the kubelet keeps the Pod in ContainerCreating."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` escapes, the rest stays."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def field_value(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str(meta.get(match[1], {}).get(match[2], ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "metadata.labels": "\n".join(f'{k}="{v}"' for k, v in sorted(meta.get("labels", {}).items())),
        "metadata.annotations": "\n".join(
            f'{k}="{v}"' for k, v in sorted(meta.get("annotations", {}).items())
        ),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", POD_IP),
        "status.hostIPs": POD_IP,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path not in values:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(values[path])


def resource_value(container: Obj, ref: Obj) -> str:
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    quantity = container.get("resources", {}).get(kind, {}).get(name)
    if quantity is None:  # no limit: the kubelet reports node allocatable
        quantity = {"cpu": str(os.cpu_count() or 1), "memory": str(_memory_bytes())}.get(name, "0")
    return str(quantity)


def _memory_bytes() -> int:
    with Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


class PodConfig:
    """Reads the Secrets and ConfigMaps a Pod refers to, once per attempt."""

    def __init__(self, kube: Kube, pod: Obj) -> None:
        self.kube = kube
        self.pod = pod
        self.namespace = pod["metadata"]["namespace"]
        self._cache: dict[tuple[str, str], Obj | None] = {}

    def _read(self, kind: str, name: str) -> Obj | None:
        key = (kind, name)
        if key not in self._cache:
            plural = "secrets" if kind == "Secret" else "configmaps"
            try:
                self._cache[key] = self.kube.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
            except ApiError as error:
                if error.status != 404:
                    raise ConfigError(
                        f"cannot read {kind} {self.namespace}/{name}: {error.message}"
                    ) from error
                self._cache[key] = None
        return self._cache[key]

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """All keys of a Secret or ConfigMap as bytes; None when missing and optional."""
        obj = self._read(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        values = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        values.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return values

    def key(self, kind: str, ref: Obj) -> str | None:
        optional = bool(ref.get("optional", False))
        data = self.data(kind, ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}")
        return data[ref["key"]].decode("utf-8", "replace")

    def env(self, container: Obj, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    ref = source[field]
                    data = self.data(kind, ref["name"], bool(ref.get("optional", False))) or {}
                    for key, raw in data.items():
                        if ENV_NAME.match(prefix + key):
                            env[prefix + key] = raw.decode("utf-8", "replace")
        for var in container.get("env", []):
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            value: str | None
            if "secretKeyRef" in source:
                value = self.key("Secret", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = self.key("ConfigMap", source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = field_value(self.pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                value = resource_value(container, source["resourceFieldRef"])
            else:
                raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
            if value is not None:
                env[name] = value
        return env


def write_files(directory: Path, files: dict[str, bytes], default_mode: int, modes: dict[str, int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(modes.get(relative, default_mode))


# --------------------------------------------------------------------------------------------------
# One Pod: its volumes, containers, processes and status.


@dataclasses.dataclass
class ContainerState:
    name: str
    image: str
    state: Obj
    last_state: Obj = dataclasses.field(default_factory=dict)
    restart_count: int = 0
    started: bool = False
    process: subprocess.Popen[bytes] | None = None

    def status(self) -> Obj:
        """This container's status as a strategic-merge patch entry: stale keys are nulled out."""
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.image,
            "imageID": f"pgwarden-node://{self.image}",
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": _explicit_state(self.state),
            "lastState": _explicit_state(self.last_state),
            "containerID": (self.state.get("running") or self.state.get("terminated") or {}).get(
                "containerID"
            ),
        }


_STATE_KEYS = {
    "waiting": ("reason", "message"),
    "running": ("startedAt",),
    "terminated": ("exitCode", "signal", "reason", "message", "startedAt", "finishedAt", "containerID"),
}


def _explicit_state(state: Obj) -> Obj:
    """A container state with every other state and every absent key set to null, so a patch replaces it."""
    return {
        kind: ({key: state[kind].get(key) for key in keys} if kind in state else None)
        for kind, keys in _STATE_KEYS.items()
    }


class PodWorker(threading.Thread):
    """Runs one Pod to completion (or deletion) and writes its status back."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.kube = agent.kube
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.dir = agent.state_dir / "pods" / self.uid
        self.stopping = threading.Event()
        self.deleted = False
        self.lock = threading.RLock()
        self.spec: Obj = pod["spec"]
        self.restart_policy: str = self.spec.get("restartPolicy", "Always")
        self.start_time = pod.get("status", {}).get("startTime") or now()
        self.volumes: dict[str, Path] = {}
        self.read_only_volumes: set[str] = set()
        self.finished = False
        self.initialized = False
        self.ready_to_start = False
        self.pod_reason: str | None = None
        self.pod_message: str | None = None
        self.last_event: dict[str, str] = {}
        self.last_status: Obj = {}
        waiting = "PodInitializing" if self.spec.get("initContainers") else "ContainerCreating"
        self.init_states = [
            ContainerState(c["name"], c.get("image", ""), {"waiting": {"reason": "PodInitializing"}})
            for c in self.spec.get("initContainers", [])
        ]
        self.states = [
            ContainerState(c["name"], c.get("image", ""), {"waiting": {"reason": waiting}})
            for c in self.spec.get("containers", [])
        ]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    # -- lifecycle ------------------------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        with self.lock:
            self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.request_deletion(min(float(pod["metadata"].get("deletionGracePeriodSeconds", 30)), 30.0))

    def request_deletion(self, grace: float) -> None:
        """Stop the containers, then remove the Pod for good (the kubelet's final, grace-0 delete)."""
        with self.lock:
            if self.deleted:
                return
            self.deleted = True
            finished = self.finished
        log.info("pod %s is being deleted: stopping its containers (grace %ss)", self.key, grace)
        if finished:
            threading.Thread(target=self._finish_deletion, daemon=True).start()
        else:
            self.stop(grace)

    def stop(self, grace: float) -> None:
        self.stopping.set()
        threading.Thread(target=self._kill_all, args=(grace,), daemon=True).start()

    def _kill_all(self, grace: float) -> None:
        processes = [s.process for s in [*self.init_states, *self.states] if s.process]
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s: node agent error", self.key)
            self.pod_message = "node agent error; see .local/cluster/node-agent.log"
        finally:
            for state in [*self.init_states, *self.states]:
                if state.process and state.process.poll() is None:
                    _signal_group(state.process, signal.SIGKILL)
            with self.lock:
                self.finished = True
                deleted = self.deleted
            if deleted:
                self._finish_deletion()

    def _run(self) -> None:
        self.push_status()
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline is not None:
            threading.Thread(target=self._enforce_deadline, args=(float(deadline),), daemon=True).start()

        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                self._materialise_volumes()
                break
            except MountError as error:
                self._set_waiting(self.states, "ContainerCreating", str(error))
                self.event("Warning", "FailedMount", str(error))
            self.stopping.wait(backoff.next())
        if self.stopping.is_set():
            return
        self.ready_to_start = True
        self.push_status()

        for container, state in zip(self.spec.get("initContainers", []), self.init_states, strict=True):
            if not self._run_to_success(container, state):
                return
        self.initialized = True
        self._set_waiting(self.states, "ContainerCreating", None)

        threads = [
            threading.Thread(
                target=self._run_container_loop, args=(c, s), name=f"{self.key}/{c['name']}", daemon=True
            )
            for c, s in zip(self.spec.get("containers", []), self.states, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.push_status()

    def _enforce_deadline(self, seconds: float) -> None:
        if not self.stopping.wait(seconds) and self.phase() not in ("Succeeded", "Failed"):
            self.pod_reason = "DeadlineExceeded"
            self.pod_message = f"Pod was active on the node longer than the specified deadline ({seconds:g}s)"
            self.event("Normal", "DeadlineExceeded", self.pod_message)
            self.stop(float(self.spec.get("terminationGracePeriodSeconds", 30)))

    def _finish_deletion(self) -> None:
        self.push_status()
        try:
            self.kube.request(
                "DELETE",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("pod %s: final delete failed: %s", self.key, error)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.agent.forget(self.uid)

    # -- containers -----------------------------------------------------------------------------

    def _run_to_success(self, container: Obj, state: ContainerState) -> bool:
        """An init container: rerun on failure unless restartPolicy is Never."""
        backoff = Backoff()
        while not self.stopping.is_set():
            code = self._run_once(container, state)
            if code == 0:
                return True
            if code is None or self.restart_policy == "Never" or self.stopping.is_set():
                return False
            self._back_off(state, backoff)
        return False

    def _run_container_loop(self, container: Obj, state: ContainerState) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            code = self._run_once(container, state)
            if code is None or self.stopping.is_set():
                return
            if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
                return
            self._back_off(state, backoff)

    def _back_off(self, state: ContainerState, backoff: Backoff) -> None:
        delay = backoff.next()
        with self.lock:
            state.last_state = state.state
            state.restart_count += 1
            state.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={state.name} pod={self.pod_name}",
                }
            }
        self.push_status()
        self.stopping.wait(delay)

    def _run_once(self, container: Obj, state: ContainerState) -> int | None:
        """Resolve config (retrying while it is missing), run the process, record how it ended."""
        backoff = Backoff()
        while True:
            if self.stopping.is_set():
                return None
            try:
                env = PodConfig(self.kube, self.pod).env(container, self.agent.base_env(self.pod))
                argv = [expand(a, env) for a in container.get("command", []) + container.get("args", [])]
                if not container.get("command"):
                    raise ConfigError(
                        f"container {state.name} has no command: the node-agent stand-in cannot run "
                        f"the entrypoint of image {state.image!r}; give the container a command"
                    )
                mounts = self._mounts(container)
                break
            except ConfigError as error:
                with self.lock:
                    state.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
                self.push_status()
                self.event("Warning", "Failed", f"Error: {error}")
            self.stopping.wait(backoff.next())

        name = state.name
        termination_file = self.dir / "termination" / f"{name}-{state.restart_count}"
        termination_file.parent.mkdir(parents=True, exist_ok=True)
        termination_file.write_bytes(b"")
        log_file = self.dir / "logs" / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if state.restart_count:
            shutil.copyfile(log_file, self.dir / "logs" / f"{name}.previous.log")
        mounts.append(
            Mount(termination_file, container.get("terminationMessagePath") or "/dev/termination-log")
        )
        workdir = container.get("workingDir")
        under_a_mount = workdir and any(
            workdir == m.target or workdir.startswith(m.target.rstrip("/") + "/") for m in mounts
        )
        if workdir and not under_a_mount and not Path(workdir).is_dir():
            created = self.dir / "workdirs" / name
            created.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(created, workdir))
        command = self.agent.sandbox_command(mounts, workdir, argv)
        container_id = f"pgwarden://{self.uid[:8]}-{name}-{state.restart_count}"
        started_at = now()
        if command is None:
            return self._terminated(
                state,
                container_id,
                started_at,
                128,
                "StartError",
                "neither bwrap nor 'unshare -m' can bind-mount volumes here: install bubblewrap",
            )
        with self.lock:
            if self.stopping.is_set():
                return None
            with log_file.open("wb") as out:
                try:
                    state.process = subprocess.Popen(
                        command,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as error:
                    return self._terminated(state, container_id, started_at, 128, "StartError", str(error))
            state.started = True
            state.state = {"running": {"startedAt": started_at, "containerID": container_id}}
        log.info("pod %s: started container %s (pid %s)", self.key, name, state.process.pid)
        self.push_status()
        code = state.process.wait()
        if code < 0:
            code = 128 - code
        message = _read_capped(termination_file, TERMINATION_MESSAGE_CAP)
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = _log_tail(log_file)
        log.info("pod %s: container %s exited with %s", self.key, name, code)
        return self._terminated(
            state, container_id, started_at, code, "Completed" if code == 0 else "Error", message
        )

    def _terminated(
        self, state: ContainerState, container_id: str, started_at: str, code: int, reason: str, message: str
    ) -> int:
        terminated: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now(),
            "containerID": container_id,
        }
        if message:
            terminated["message"] = message
        with self.lock:
            state.state = {"terminated": terminated}
        self.push_status()
        return code

    def _mounts(self, container: Obj) -> list[Mount]:
        mounts = []
        for mount in container.get("volumeMounts", []):
            source = self.volumes.get(mount["name"])
            if source is None:
                raise ConfigError(f"volume {mount['name']!r} is not defined in the pod")
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            read_only = bool(mount.get("readOnly", False)) or mount["name"] in self.read_only_volumes
            mounts.append(Mount(source, mount["mountPath"], read_only))
        return mounts

    # -- volumes --------------------------------------------------------------------------------

    def _materialise_volumes(self) -> None:
        config = PodConfig(self.kube, self.pod)
        volumes: dict[str, Path] = {}
        read_only: set[str] = set()
        root = self.dir / "volumes"
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            path = root / name
            try:
                if "emptyDir" in volume:
                    path.mkdir(parents=True, exist_ok=True)
                elif "hostPath" in volume:
                    path = Path(volume["hostPath"]["path"])
                    if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                        path.mkdir(parents=True, exist_ok=True)
                    if not path.exists():
                        raise MountError(
                            f'MountVolume.SetUp failed for volume "{name}" : hostPath {path} does not exist'
                        )
                elif "persistentVolumeClaim" in volume:
                    path = self._claim_dir(volume["persistentVolumeClaim"]["claimName"], name)
                elif projection := _as_projection(volume):
                    shutil.rmtree(path, ignore_errors=True)
                    self._project(config, projection, path)
                    read_only.add(name)
                else:
                    kind = next((k for k in volume if k != "name"), "?")
                    raise MountError(
                        f'MountVolume.SetUp failed for volume "{name}" : volume type {kind} is not supported '
                        "by the node-agent stand-in (emptyDir, configMap, secret, projected, downwardAPI, "
                        "hostPath, persistentVolumeClaim are)"
                    )
            except ConfigError as error:
                raise MountError(f'MountVolume.SetUp failed for volume "{name}" : {error}') from error
            volumes[name] = path
        self.volumes = volumes
        self.read_only_volumes = read_only

    def _claim_dir(self, claim: str, volume: str) -> Path:
        try:
            self.kube.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}")
        except ApiError as error:
            raise MountError(
                f'MountVolume.SetUp failed for volume "{volume}" : persistentvolumeclaim "{claim}" not found'
                if error.status == 404
                else str(error)
            ) from error
        path = self.agent.state_dir / "claims" / self.namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _project(self, config: PodConfig, projection: Obj, path: Path) -> None:
        default_mode = int(projection.get("defaultMode", 0o644))
        files: dict[str, bytes] = {}
        modes: dict[str, int] = {}
        for source in projection["sources"]:
            for field, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if field not in source:
                    continue
                ref = source[field]
                name = ref.get("name") or ref.get("secretName", "")
                optional = bool(ref.get("optional", False))
                data = config.data(kind, name, optional)
                if data is None:
                    continue
                items = ref.get("items")
                if not items:
                    files.update(data)
                    continue
                for item in items:
                    if item["key"] not in data:
                        if optional:
                            continue
                        raise ConfigError(
                            f"{kind.lower()} references non-existent {kind.lower()} key: {item['key']}"
                        )
                    files[item["path"]] = data[item["key"]]
                    if "mode" in item:
                        modes[item["path"]] = int(item["mode"])
            if "downwardAPI" in source:
                container_by_name = {c["name"]: c for c in self.spec.get("containers", [])}
                for item in source["downwardAPI"].get("items", []):
                    if "fieldRef" in item:
                        value = field_value(self.pod, item["fieldRef"]["fieldPath"])
                    else:
                        ref = item["resourceFieldRef"]
                        value = resource_value(container_by_name.get(ref.get("containerName", ""), {}), ref)
                    files[item["path"]] = value.encode()
                    if "mode" in item:
                        modes[item["path"]] = int(item["mode"])
            if "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"]
                files[token_source["path"]] = self._token(token_source).encode()
            if "clusterTrustBundle" in source or "podCertificate" in source:
                raise ConfigError("clusterTrustBundle and podCertificate projections are not supported here")
        write_files(path, files, default_mode, modes)

    def _token(self, source: Obj) -> str:
        account = self.spec.get("serviceAccountName") or "default"
        spec: Obj = {
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": self.uid},
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        try:
            answer = self.kube.request(
                "POST",
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except ApiError as error:
            raise ConfigError(
                f"failed to fetch token for service account {account}: {error.message}"
            ) from error
        return str(answer["status"]["token"])

    # -- status ---------------------------------------------------------------------------------

    def _set_waiting(self, states: list[ContainerState], reason: str, message: str | None) -> None:
        with self.lock:
            for state in states:
                state.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.push_status()

    def phase(self) -> str:
        with self.lock:
            failed_init = any(
                "terminated" in s.state and s.state["terminated"]["exitCode"] != 0 for s in self.init_states
            )
            if failed_init and (self.restart_policy == "Never" or self.stopping.is_set()):
                return "Failed"
            if not self.initialized:
                return "Pending"
            states = [s.state for s in self.states]
            if any("running" in s for s in states):
                return "Running"
            if all("terminated" in s for s in states):
                if all(s["terminated"]["exitCode"] == 0 for s in states):
                    return "Succeeded"
                if self.restart_policy == "Never" or self.stopping.is_set():
                    return "Failed"
                return "Running"
            if any(state.started for state in self.states):
                return "Running"
            return "Pending"

    def _conditions(self, phase: str) -> list[Obj]:
        stamp = now()
        all_running = all("running" in s.state for s in self.states)
        ready = phase == "Running" and all_running

        def condition(kind: str, value: bool, reason: str | None = None) -> Obj:
            entry: Obj = {"type": kind, "status": "True" if value else "False", "lastTransitionTime": stamp}
            if reason and not value:
                entry["reason"] = reason
            return entry

        completed = phase in ("Succeeded", "Failed")
        not_ready = "PodCompleted" if completed else "ContainersNotReady"
        return [
            condition("PodReadyToStartContainers", self.ready_to_start and not completed),
            condition("Initialized", self.initialized or not self.init_states, "ContainersNotInitialized"),
            condition("Ready", ready, not_ready),
            condition("ContainersReady", ready, not_ready),
        ]

    def push_status(self) -> None:
        """Patch the fields a kubelet owns (strategic merge: conditions of others stay as they are)."""
        with self.lock:
            phase = self.phase()
            mine = self._conditions(phase)
            # An unchanged condition keeps the time of its last transition.
            previous = {c["type"]: c for c in self.pod.get("status", {}).get("conditions", [])}
            for entry in mine:
                before = previous.get(entry["type"])
                if before and before.get("status") == entry["status"]:
                    entry["lastTransitionTime"] = before.get(
                        "lastTransitionTime", entry["lastTransitionTime"]
                    )
            failed = phase == "Failed"
            status: Obj = {
                "phase": phase,
                "conditions": mine,
                "hostIP": POD_IP,
                "hostIPs": [{"ip": POD_IP}],
                "podIP": POD_IP,
                "podIPs": [{"ip": POD_IP}],
                "startTime": self.start_time,
                "containerStatuses": [s.status() for s in self.states],
                "reason": self.pod_reason if failed else None,
                "message": self.pod_message if failed else None,
            }
            if self.init_states:
                status["initContainerStatuses"] = [s.status() for s in self.init_states]
            if status == self.last_status:
                return
            try:
                self.pod = self.kube.request(
                    "PATCH",
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                    # The uid makes the patch fail, rather than apply, should the name now be another pod's.
                    body={"metadata": {"uid": self.uid}, "status": status},
                    content_type="application/strategic-merge-patch+json",
                )
                self.last_status = status
            except ApiError as error:
                if error.status != 404:
                    log.warning("pod %s: status update failed: %s", self.key, error)

    def event(self, kind: str, reason: str, message: str) -> None:
        if self.last_event.get(reason) == message:
            return
        self.last_event[reason] = message
        self.agent.event(self.pod, kind, reason, message)


def _as_projection(volume: Obj) -> Obj | None:
    """configMap, secret and downwardAPI volumes are projected volumes with one source."""
    if "projected" in volume:
        return dict(volume["projected"])
    for field, key in (("configMap", "configMap"), ("secret", "secret"), ("downwardAPI", "downwardAPI")):
        if field in volume:
            source = dict(volume[field])
            mode = source.pop("defaultMode", 0o644)
            if field == "secret":
                source["name"] = source.pop("secretName", "")
            return {"defaultMode": mode, "sources": [{key: source}]}
    return None


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _read_capped(path: Path, cap: int) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(cap).decode("utf-8", "replace")
    except OSError:
        return ""


def _log_tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    tail = b"\n".join(data.splitlines()[-FALLBACK_LOG_LINES:])[-FALLBACK_LOG_BYTES:]
    return tail.decode("utf-8", "replace")


class Backoff:
    """1s, 2s, 4s, then every 5s: quicker than the kubelet's, so tests see recoveries fast."""

    def __init__(self) -> None:
        self.delay = 0.5

    def next(self) -> float:
        self.delay = min(self.delay * 2, 5.0)
        return self.delay


# --------------------------------------------------------------------------------------------------
# The node: registration, heartbeats, binding, the Pod watch, and container logs for `kubectl logs`.


class NodeAgent:
    def __init__(self, kube: Kube, node_name: str, state_dir: Path, log_port: int) -> None:
        self.kube = kube
        self.node_name = node_name
        self.state_dir = state_dir
        self.log_port = log_port
        self.stop_event = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.sandbox = detect_sandbox()
        self.venv_dir = sys.prefix
        self.venv_bin = str(Path(sys.prefix) / "bin")
        self.apiserver_port = urllib.parse.urlsplit(kube.host).port or 443
        # Pods whose nodeSelector this node does not match, retried when the node's labels change.
        self.unschedulable: dict[str, Obj] = {}
        self.node_labels = self.labels()
        self.started_at = now()

    # -- node -----------------------------------------------------------------------------------

    def labels(self) -> dict[str, str]:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "node.pgwarden.io/stand-in": "true",
        }

    def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.labels()},
        }
        try:
            registered = self.kube.request("POST", "/api/v1/nodes", body=node)
            log.info("registered node %s", self.node_name)
        except ApiError as error:
            if error.status != 409:
                raise
            registered = self.kube.request(
                "PATCH",
                f"/api/v1/nodes/{self.node_name}",
                body={"metadata": {"labels": self.labels()}},
                content_type="application/merge-patch+json",
            )
        self.node_labels = registered["metadata"].get("labels", {})
        self.post_node_status()
        self.renew_lease()

    def post_node_status(self) -> None:
        stamp = now()
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_bytes() // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(self.state_dir).total // 1024}Ki",
        }

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self.started_at,
            }

        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "stand-in: not measured"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "stand-in: not measured"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "stand-in: not measured"),
                condition(
                    "Ready", "True", "KubeletReady", "pgwarden node-agent stand-in is posting ready status"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "pgwarden node-agent stand-in",
                "containerRuntimeVersion": "pgwarden-node://0.1",
                "kubeletVersion": os.environ.get("PGWARDEN_K8S_VERSION", "v0.0.0"),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels()["kubernetes.io/arch"],
            },
        }
        self.kube.request(
            "PATCH",
            f"/api/v1/nodes/{self.node_name}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": 40, "renewTime": now_micro()}
        try:
            self.kube.request("PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json")
        except ApiError as error:
            if error.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            self.kube.request("POST", path.rsplit("/", 1)[0], body=lease)

    def heartbeat(self) -> None:
        beats = 0
        while not self.stop_event.wait(10):
            try:
                self.renew_lease()
                beats += 1
                if beats % 3 == 0:
                    self.post_node_status()
                if self.unschedulable:
                    node = self.kube.get(f"/api/v1/nodes/{self.node_name}")
                    self.node_labels = node["metadata"].get("labels", {})
                    for pod in list(self.unschedulable.values()):
                        self.bind(pod)
            except Exception as error:
                log.warning("heartbeat failed: %s", error)

    # -- binding (there is no scheduler) --------------------------------------------------------

    def bind_pending(self) -> None:
        def on_list(pods: list[Obj]) -> None:
            for pod in pods:
                self.bind(pod)

        def on_event(kind: str, pod: Obj) -> None:
            if kind in ("ADDED", "MODIFIED"):
                self.bind(pod)
            else:
                self.unschedulable.pop(pod["metadata"]["uid"], None)

        list_and_watch(
            self.kube,
            "/api/v1/pods",
            {"fieldSelector": "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed"},
            on_list,
            on_event,
            self.stop_event,
            "unbound pods",
        )

    def bind(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if meta.get("deletionTimestamp") or spec.get("nodeName") or spec.get("schedulingGates"):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        key = f"{meta['namespace']}/{meta['name']}"
        if any(self.node_labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            if meta["uid"] not in self.unschedulable:
                message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                self._patch_scheduled(pod, "False", "Unschedulable", message)
                self.event(pod, "Warning", "FailedScheduling", message)
            self.unschedulable[meta["uid"]] = pod
            return
        self.unschedulable.pop(meta["uid"], None)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.kube.request(
                "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", body=binding
            )
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("binding %s failed: %s", key, error)
            return
        log.info("bound pod %s to %s", key, self.node_name)
        self.event(pod, "Normal", "Scheduled", f"Successfully assigned {key} to {self.node_name}")

    def _patch_scheduled(self, pod: Obj, status: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now(),
        }
        try:
            self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                body={"status": {"conditions": [condition]}},
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as error:
            log.warning("pod %s/%s: cannot report %s: %s", meta["namespace"], meta["name"], reason, error)

    # -- pods on this node ----------------------------------------------------------------------

    def watch_pods(self) -> None:
        def on_list(pods: list[Obj]) -> None:
            seen = {pod["metadata"]["uid"] for pod in pods}
            with self.workers_lock:
                gone = [w for uid, w in self.workers.items() if uid not in seen]
            for worker in gone:
                worker.stop(0)
                self.forget(worker.uid)
            for pod in pods:
                self.on_pod("MODIFIED", pod)

        list_and_watch(
            self.kube,
            "/api/v1/pods",
            {"fieldSelector": f"spec.nodeName={self.node_name}"},
            on_list,
            self.on_pod,
            self.stop_event,
            "node pods",
        )

    def on_pod(self, kind: str, pod: Obj) -> None:
        if self.stop_event.is_set():
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.workers_lock:
            worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker:
                worker.stop(0)
                self.forget(uid)
            return
        if worker:
            worker.update(pod)
            return
        phase = pod.get("status", {}).get("phase", "Pending")
        if meta.get("deletionTimestamp"):
            if phase in ("Succeeded", "Failed") or not self._has_started(pod):
                self._delete_now(pod)
                return
        elif phase in ("Succeeded", "Failed"):
            return
        if self._has_started(pod) and pod["spec"].get("restartPolicy") == "Never":
            # Its processes died with an earlier agent; a Never pod must not run twice.
            self._fail_orphan(pod)
            return
        worker = PodWorker(self, pod)
        with self.workers_lock:
            self.workers[uid] = worker
        log.info("pod %s/%s: starting", meta["namespace"], meta["name"])
        worker.start()
        if meta.get("deletionTimestamp"):
            worker.update(pod)

    @staticmethod
    def _has_started(pod: Obj) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses", []) + pod.get("status", {}).get(
            "initContainerStatuses", []
        )
        return any("running" in s.get("state", {}) or "terminated" in s.get("state", {}) for s in statuses)

    def _fail_orphan(self, pod: Obj) -> None:
        meta = pod["metadata"]
        status = dict(pod.get("status", {}))
        status.update(
            {
                "phase": "Failed",
                "reason": "NodeAgentRestarted",
                "message": "the node agent restarted while this pod ran",
            }
        )
        try:
            self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                body=[{"op": "replace", "path": "/status", "value": status}],
                content_type="application/json-patch+json",
            )
        except ApiError as error:
            log.warning("pod %s/%s: cannot mark failed: %s", meta["namespace"], meta["name"], error)

    def _delete_now(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            self.kube.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("pod %s/%s: delete failed: %s", meta["namespace"], meta["name"], error)
        shutil.rmtree(self.state_dir / "pods" / meta["uid"], ignore_errors=True)

    def forget(self, uid: str) -> None:
        with self.workers_lock:
            self.workers.pop(uid, None)

    def find_worker(self, namespace: str, name: str) -> PodWorker | None:
        with self.workers_lock:
            return next(
                (w for w in self.workers.values() if (w.namespace, w.pod_name) == (namespace, name)), None
            )

    # -- what every container gets --------------------------------------------------------------

    def base_env(self, pod: Obj) -> dict[str, str]:
        port = str(self.apiserver_port)
        return {
            "PATH": f"{self.venv_bin}:{DEFAULT_PATH}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": POD_IP,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{POD_IP}:{port}",
        }

    def sandbox_command(self, mounts: list[Mount], workdir: str | None, argv: list[str]) -> list[str] | None:
        if self.sandbox == "bwrap":
            return bwrap_command(mounts, workdir, argv, keep_visible=(self.venv_dir, REPO))
        if self.sandbox == "unshare":
            return unshare_command(mounts, workdir, argv)
        return None

    def event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {
                "component": "kubelet" if reason != "Scheduled" else "default-scheduler",
                "host": self.node_name,
            },
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except ApiError as error:
            log.debug("event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], error)

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> None:
        if self.sandbox is None:
            log.error("neither bwrap nor 'unshare -m' works here: containers will fail; install bubblewrap")
        else:
            log.info("sandbox: %s", self.sandbox)
        self.register()
        for target in (self.heartbeat, self.bind_pending, self.watch_pods):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        log.info("node %s ready; pods run with PATH starting %s", self.node_name, self.venv_bin)
        self.stop_event.wait()

    def shutdown(self) -> None:
        """Stop every container (SIGTERM, then SIGKILL after 5s) and reap them all before exiting."""
        self.stop_event.set()
        with self.workers_lock:
            workers = list(self.workers.values())
        processes = []
        for worker in workers:
            worker.stopping.set()
            with worker.lock:  # no container starts after this: starting happens under the lock
                processes += [s.process for s in [*worker.init_states, *worker.states] if s.process]
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        # Whatever else exited without being waited for: leave no zombie to an init that may not reap.
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


# --------------------------------------------------------------------------------------------------
# Container logs: the API server proxies `kubectl logs` to /containerLogs/<ns>/<pod>/<container>.


def serve_logs(agent: NodeAgent, port: int, cert: str, key: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("logs: " + format, *args)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served here")
                return
            _, namespace, pod, container = parts
            query = urllib.parse.parse_qs(url.query)
            worker = agent.find_worker(namespace, pod)
            if worker is None:
                self.send_error(404, f"pod {namespace}/{pod} has no containers on this node (anymore)")
                return
            previous = query.get("previous", ["false"])[0] == "true"
            path = worker.dir / "logs" / (f"{container}.previous.log" if previous else f"{container}.log")
            if not path.exists():
                self.send_error(404, f"container {container} of {namespace}/{pod} has no logs yet")
                return
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(query["tailLines"][0]) :]) if int(query["tailLines"][0]) else b""
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"][0])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            follow = query.get("follow", ["false"])[0] == "true"
            if not follow:
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.end_headers()
            self.wfile.write(data)
            offset = path.stat().st_size
            state = next((s for s in worker.states + worker.init_states if s.name == container), None)
            while (state and state.process and state.process.poll() is None) or offset < path.stat().st_size:
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        self.wfile.write(handle.read(size - offset))
                    self.wfile.flush()
                    offset = size
                time.sleep(0.2)

    server = http.server.ThreadingHTTPServer((POD_IP, port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="logs", daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((POD_IP, 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="pgwarden-node")
    parser.add_argument(
        "--state-dir", required=True, type=Path, help="per-pod volumes, logs, termination files"
    )
    parser.add_argument(
        "--serving-cert", help="TLS certificate for the container-log endpoint (kubectl logs)"
    )
    parser.add_argument("--serving-key")
    parser.add_argument("-v", "--verbose", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    options.state_dir.mkdir(parents=True, exist_ok=True)

    log_port = free_port() if options.serving_cert else 0
    agent = NodeAgent(Kube(options.kubeconfig), options.node_name, options.state_dir, log_port)
    if options.serving_cert:
        serve_logs(agent, log_port, options.serving_cert, options.serving_key)
        log.info("serving container logs on https://%s:%s", POD_IP, log_port)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping pods and exiting", signum)
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()


if __name__ == "__main__":
    main()
