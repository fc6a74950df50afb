"""Storage by web identity from the command line when the identity cannot be exchanged: the STS endpoint
unreachable. The run fails with one plain line naming the endpoint (no library traceback), exit 1, and the
token never shows. (The exchange itself, against MinIO's STS and the cluster's tokens, is in
tests/cluster/test_web_identity_e2e.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

from cli.helpers import json_report, run_pgwarden

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLW5vdC1mb3IteW91cl9leWVz"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_sts_fails_the_command_in_one_line_without_a_traceback_or_the_token(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ROLE_ARN": "arn:minio:iam:::role/pgwarden",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_MAX_ATTEMPTS": "1",
    }

    done = run_pgwarden("backups", "s3://nightly/shop", "--json", env=env)

    assert done.returncode == 1, done.stderr
    assert json_report(done)["outcome"] == "Failed"
    assert endpoint in json_report(done)["error"]["message"]
    assert "Traceback" not in done.stderr, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert TOKEN[-20:] not in done.stdout + done.stderr
