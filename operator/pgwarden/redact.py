"""Redaction of passwords, keys and connection strings from every text that leaves the engine.

Two mechanisms: patterns (URL userinfo, `password=` keywords, SQL `PASSWORD '...'`) and a registry of exact
secret values learned at the boundary (a password parsed from a URL, PGPASSWORD, the S3 secret key), so a
secret echoed back in a server error is caught even where no pattern would see it.

Only secrets are masked. An S3 access key id, a bucket, a table or a location is not a secret and must
survive intact (a location printed by `backup` is pasted into `restore`). So the registry masks a secret
where it stands as a whole token, never inside a longer name, and never in the identifier fields of a
report (`location`, `table`, `id`, ...), where a password that happens to equal a name would mangle it.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@")
_SECRET_KEYS = r"password|passwd|pwd|secret|sslpassword|aws_secret_access_key|secretAccessKey|secret_key"
# `password=x`, `password='x y'` (libpq keywords), `"password": "x"` (JSON) and `'password': 'x'` (repr).
_KEYWORD_PASSWORD = re.compile(
    rf"(?P<key>(?P<kq>['\"]?)\b(?:{_SECRET_KEYS})\b(?P=kq)\s*[=:]\s*)"
    r"(?:(?P<quote>['\"])(?P<quoted>(?:\\.|(?!(?P=quote)).)*)(?P=quote)|(?P<bare>[^'\"\s&;,}]+))",
    re.IGNORECASE,
)
# A JSON Web Token (a projected ServiceAccount token, an OIDC id token): three base64url parts, the first
# two JSON objects ("eyJ" is `{"`); masked wherever it stands, registered or not.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
# SQL: `PASSWORD 'x'`, `ENCRYPTED PASSWORD E'x'`, `PASSWORD U&'x'`, `PASSWORD $$x$$` / `$tag$x$tag$` (CREATE/ALTER
# ROLE and USER, user mappings). A literal cut short (a clipped statement excerpt) is masked to the end.
_SQL_PASSWORD = re.compile(
    r"(?P<key>\bPASSWORD\s+)"
    r"(?P<literal>[eE]'(?:''|\\.|[^'\\])*(?:'|$)"
    r"|[uU]&'(?:''|[^'])*(?:'|$)"
    r"|'(?:''|[^'])*(?:'|$)"
    r"|\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?(?:\$(?P=tag)\$|$))",
    re.IGNORECASE | re.DOTALL,
)
# Secret values: an access key id (AWS_ACCESS_KEY_ID) names a key, it is not one, and is not listed.
_SECRET_ENV_VARS = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DATABASE_URL")
_MIN_SECRET_LENGTH = 4
# Report fields that hold names, never secrets: the registry of values leaves them alone (patterns do not).
IDENTIFIER_FIELDS = frozenset(
    {
        "table",
        "object",
        "location",
        "restoredFrom",
        "id",
        "database",
        "version",
        "versionAfter",
        "currentVersion",
        "description",
        "checksum",
        "sha256",
        "pending",
        "baselined",
        "bucket",
        "prefix",
    }
)

_lock = threading.Lock()
_known_secrets: set[str] = set()
_matcher: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it stands as a whole token from now on."""
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


def register_token_file(path: str | None) -> None:
    """Remember the token in a web-identity token file (AWS_WEB_IDENTITY_TOKEN_FILE), if it can be read."""
    if not path:
        return
    try:
        register_secret(Path(path).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return


def register_environment() -> None:
    """Learn the secrets that arrive through the environment (libpq and AWS variables, the web-identity
    token file)."""
    for name in _SECRET_ENV_VARS:
        value = os.environ.get(name)
        if name == "DATABASE_URL":
            register_url(value)
        else:
            register_secret(value)
    register_token_file(os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"))


def redact(text: str) -> str:
    """The text with passwords in URLs, `password=` keywords, SQL `PASSWORD` literals and every registered
    secret masked."""
    if not text:
        return text
    text = redact_patterns(text)
    matcher = _secret_matcher()
    return matcher.sub(MASK, text) if matcher else text


def redact_patterns(text: str) -> str:
    """The text with only what patterns recognise as a secret masked (URL passwords, keywords, JWTs, SQL)."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(_mask_keyword, text)
    text = _JWT.sub(MASK, text)
    return _SQL_PASSWORD.sub(lambda m: f"{m.group('key')}'{MASK}'", text)


def _secret_matcher() -> re.Pattern[str] | None:
    """One pattern for every registered secret, longest first, each matched as a whole token: not preceded
    or followed by a letter, digit or `_` where the secret itself begins or ends with one."""
    global _matcher
    with _lock:
        secrets = frozenset(_known_secrets)
        if _matcher[0] == secrets:
            return _matcher[1]
    alternatives = [
        (r"(?<!\w)" if secret[0].isalnum() or secret[0] == "_" else "")
        + re.escape(secret)
        + (r"(?!\w)" if secret[-1].isalnum() or secret[-1] == "_" else "")
        for secret in sorted(secrets, key=len, reverse=True)
    ]
    compiled = re.compile("|".join(alternatives)) if alternatives else None
    with _lock:
        _matcher = (secrets, compiled)
    return compiled


def _mask_keyword(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def redact_obj(value: object, *, identifier: bool = False) -> object:
    """Redact every string inside a JSON-like structure (dicts, lists, strings); the values of
    IDENTIFIER_FIELDS get the patterns only, so a name that equals a secret is not mangled."""
    if isinstance(value, str):
        return redact_patterns(value) if identifier else redact(value)
    if isinstance(value, dict):
        return {key: redact_obj(item, identifier=key in IDENTIFIER_FIELDS) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(item, identifier=identifier) for item in value]
    return value
