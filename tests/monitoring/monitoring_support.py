"""What the monitoring tests share: the chart rendered by a real helm, one template at a time."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pgwarden"
# The release the rule tests' series are labelled for: its metrics Service (the targets' job) is
# pgwarden-metrics in namespace pgwarden.
RELEASE = "pgwarden"


def render(
    helm: Path, *settings: str, show: str | None = "templates/prometheusrule.yaml"
) -> list[dict[str, Any]]:
    """`helm template` of the chart (one template of it unless `show` is None), with `--set` settings."""
    args = [str(helm), "template", RELEASE, str(CHART), "--namespace", RELEASE]
    if show:
        args += ["--show-only", show]
    for setting in settings:
        args += ["--set", setting]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
