"""A throwaway Prometheus for tests: prometheus and promtool built from the Prometheus Go module.

`hack/build-prometheus.sh` builds both once per machine (cached under ~/.cache/pgwarden). `running` starts a
server on 127.0.0.1 with the test's scrape config and rule files and a data directory of its own; its HTTP
API answers instant queries and lists alerts. `service_monitor_scrape_config` is the scrape config a
Prometheus Operator makes of a ServiceMonitor, so a test scrapes exactly as the chart's ServiceMonitor would.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgwarden_testing.localpg import free_port

BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "build-prometheus.sh"
Obj = dict[str, Any]


class PrometheusUnavailable(RuntimeError):
    """prometheus or promtool could not be built or started; the message says why."""


def binaries() -> Path:
    """The directory holding prometheus and promtool (building them on first use: minutes)."""
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=3600)
    if built.returncode != 0:
        raise PrometheusUnavailable(f"hack/build-prometheus.sh failed:\n{built.stderr[-3000:]}")
    return Path(built.stdout.strip().splitlines()[-1])


def rule_file(prometheus_rule: Obj) -> Obj:
    """A PrometheusRule's groups as a Prometheus rule file (what the Prometheus Operator mounts)."""
    return {"groups": prometheus_rule["spec"]["groups"]}


def _label_name(name: str) -> str:
    """A Kubernetes label name as Prometheus' service discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def service_monitor_scrape_config(monitor: Obj, kubeconfig: Path) -> list[Obj]:
    """One scrape job per endpoint of a ServiceMonitor, as the Prometheus Operator generates it (role
    endpointslice): keep the Services its selector matches and the named port, label the targets with
    namespace, service, pod, container, endpoint and job (the Service's name)."""
    spec = monitor["spec"]
    meta = monitor["metadata"]
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [meta["namespace"]]
    keep_service = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_service_label_{_label_name(key)}",
                f"__meta_kubernetes_service_labelpresent_{_label_name(key)}",
            ],
            "regex": f"({re.escape(value)});true",
        }
        for key, value in sorted(spec["selector"].get("matchLabels", {}).items())
    ]
    jobs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        port = endpoint["port"]
        relabel = [
            *keep_service,
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": port},
            {
                "source_labels": [
                    "__meta_kubernetes_endpointslice_address_target_kind",
                    "__meta_kubernetes_endpointslice_address_target_name",
                ],
                "separator": ";",
                "regex": "Pod;(.*)",
                "target_label": "pod",
                "replacement": "${1}",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {
                "action": "drop",
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "(Failed|Succeeded)",
            },
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": port},
        ]
        jobs.append(
            {
                "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "scrape_interval": endpoint.get("interval", "30s"),
                "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
                "metrics_path": endpoint.get("path", "/metrics"),
                "scheme": endpoint.get("scheme", "http"),
                "kubernetes_sd_configs": [
                    {
                        "role": "endpointslice",
                        "kubeconfig_file": str(kubeconfig),
                        "namespaces": {"names": namespaces},
                    }
                ],
                "relabel_configs": relabel,
            }
        )
    return jobs


def panel_queries(dashboard: Obj, variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel of a Grafana dashboard, with its variables
    ($namespace, $__rate_interval, ...) replaced as Grafana would (longest names first)."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = str(target["expr"])
            for name in sorted(variables, key=len, reverse=True):
                expr = expr.replace(f"${name}", variables[name]).replace(f"${{{name}}}", variables[name])
            queries.append((str(panel["title"]), expr))
    return queries


@dataclass
class Prometheus:
    """A running server on 127.0.0.1."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[Obj]:
        """An instant query's samples: [{metric: {...}, value: [time, "text"]}]."""
        data = self._get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def alerts(self) -> list[Obj]:
        """The alerts pending or firing now."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def targets(self) -> list[Obj]:
        return list(self._get("/api/v1/targets")["activeTargets"])

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def running(
    workdir: Path, scrape_configs: list[Obj], rules: Obj | None = None, evaluation_interval: str = "1s"
) -> Iterator[Prometheus]:
    """A Prometheus on a free port of 127.0.0.1 scraping `scrape_configs` and evaluating `rules`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config: Obj = {
        "global": {"scrape_interval": "5s", "evaluation_interval": evaluation_interval},
        "scrape_configs": scrape_configs,
    }
    if rules is not None:
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config["rule_files"] = [str(workdir / "rules.yaml")]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(binaries() / "prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server, timeout=60)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Prometheus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PrometheusUnavailable(
                f"prometheus exited {server.process.returncode}:\n{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise PrometheusUnavailable(f"prometheus not ready after {timeout:g}s:\n{server.log_tail()}")
