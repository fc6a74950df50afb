"""Redaction of passwords, keys and connection strings from every text that leaves the engine.

Two mechanisms: patterns (URL userinfo, `password=` keywords, known secret env vars) and a registry of
exact secret values learned at the boundary (a password parsed from a URL, PGPASSWORD, S3 keys), so a
secret echoed back in a server error is caught even where no pattern would see it.
"""

from __future__ import annotations

import os
import re
import threading

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@")
_SECRET_KEYS = r"password|passwd|pwd|secret|sslpassword|aws_secret_access_key|secretAccessKey|secret_key"
# `password=x`, `password='x y'` (libpq keywords), `"password": "x"` (JSON) and `'password': 'x'` (repr).
_KEYWORD_PASSWORD = re.compile(
    rf"(?P<key>(?P<kq>['\"]?)\b(?:{_SECRET_KEYS})\b(?P=kq)\s*[=:]\s*)"
    r"(?:(?P<quote>['\"])(?P<quoted>(?:\\.|(?!(?P=quote)).)*)(?P=quote)|(?P<bare>[^'\"\s&;,}]+))",
    re.IGNORECASE,
)
_SECRET_ENV_VARS = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DATABASE_URL")
_MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that any text containing it is masked from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _known_secrets.add(value)
        from urllib.parse import quote

        encoded = quote(value, safe="")
        if encoded != value:
            with _lock:
                _known_secrets.add(encoded)


def register_url(url: str | None) -> None:
    """Remember the password of a connection URL (or `password=` keyword string)."""
    if not url:
        return
    from urllib.parse import unquote

    for match in _URL_PASSWORD.finditer(url):
        register_secret(unquote(match.group("pw")))
    for match in _KEYWORD_PASSWORD.finditer(url):
        register_secret(match.group("quoted") if match.group("quote") else match.group("bare"))


def register_environment() -> None:
    """Learn the secrets that arrive through the environment (libpq and AWS variables)."""
    for name in _SECRET_ENV_VARS:
        value = os.environ.get(name)
        if name == "DATABASE_URL":
            register_url(value)
        else:
            register_secret(value)


def redact(text: str) -> str:
    """The text with passwords in URLs, `password=` keywords and every registered secret masked."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(_mask_keyword, text)
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _mask_keyword(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def redact_obj(value: object) -> object:
    """Redact every string inside a JSON-like structure (dicts, lists, strings)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_obj(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(item) for item in value]
    return value
