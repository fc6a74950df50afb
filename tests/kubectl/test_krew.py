"""The krew manifest (a krew-release-bot template) and the launcher it installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_krew_manifest_is_a_plugin_named_pgwarden_installing_the_launcher() -> None:
    template = (REPO / ".krew.yaml").read_text()
    # What the release bot does: the tag for .TagName, a URL and sha256 for addURIAndSha.
    rendered = re.sub(
        r"\{\{addURIAndSha \"([^\"]+)\" \.TagName \}\}",
        lambda m: f"uri: {m.group(1)}\n      sha256: {'0' * 64}",
        template,
    ).replace("{{ .TagName }}", "v0.1.0")
    manifest = yaml.safe_load(rendered)
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "pgwarden"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["bin"] == "kubectl-pgwarden"
    assert platform["uri"].endswith("/v0.1.0/kubectl-pgwarden.tar.gz")
    described = manifest["spec"]["description"]
    for command in (
        "status [NAME]",
        "approve NAME",
        "backup NAME --now",
        "drill NAME --now",
        "restore BACKUP",
    ):
        assert f"\n  {command}" in described
    assert "history NAME, logs NAME" in described
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-pgwarden"] == "pgwarden.kubectl.main:console"


def test_the_launcher_runs_the_plugin_of_the_installed_package() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "krew" / "kubectl-pgwarden"), "--help"],
        env={**os.environ, "PGWARDEN_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: kubectl pgwarden" in result.stdout
