"""kopf logs in with the kubeconfig given on the command line, whatever KUBECONFIG said at import time."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import kopf
import pytest

from pgwarden.operator.main import login_handler


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
                "current-context": "x",
            }
        )
    )
    return path


def login(config: str | None) -> kopf.ConnectionInfo:
    return login_handler(config)(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))


def test_the_given_kubeconfig_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = kubeconfig(tmp_path / "other", "https://10.9.9.9:6443", "not-this-one")
    monkeypatch.setenv("KUBECONFIG", str(other))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    given = kubeconfig(tmp_path / "given", "https://127.0.0.1:16443", "sa-token")

    info = login(str(given))

    assert info.server == "https://127.0.0.1:16443"
    assert info.token == "sa-token"
    assert info.scheme in (None, "Bearer")
    assert info.insecure is True


def test_an_unreadable_kubeconfig_is_a_login_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(kopf.LoginError, match="no-such-file"):
        login(str(tmp_path / "no-such-file"))


def test_the_command_line_hands_its_kubeconfig_to_the_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pgwarden operator --kubeconfig X` passes X down to the login (kopf.run itself is not started)."""
    import pgwarden.operator.main as main
    from pgwarden.console import build_parser

    seen: dict[str, object] = {}
    real = main.login_handler

    def recording(config: str | None) -> object:
        seen["kubeconfig"] = config
        return real(config)

    monkeypatch.setattr(main, "login_handler", recording)
    monkeypatch.setattr(main.kopf, "run", lambda **kwargs: seen.setdefault("run", kwargs))
    monkeypatch.setattr(main.kopf, "configure", lambda **_: None)
    args = build_parser().parse_args(
        [
            "operator",
            "--kubeconfig",
            str(tmp_path / "k"),
            "--metrics-port",
            "0",
            "--liveness-port",
            "0",
            "--no-leader-election",  # the Lease would need an API server
        ]
    )
    assert args.run(args) == 0
    assert seen["kubeconfig"] == str(tmp_path / "k")
    assert seen["run"]["memo"]["kubeconfig"] == str(tmp_path / "k")  # type: ignore[index]
