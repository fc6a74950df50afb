"""`pgwarden.redact`: passwords in URLs, `password=` keywords and every registered secret are masked,
in plain text and inside nested reports, and nothing else is touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgwarden import redact as redaction
from pgwarden.redact import (
    MASK,
    redact,
    redact_obj,
    register_environment,
    register_secret,
    register_url,
)


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with an empty registry (it is process-wide in the engine)."""
    monkeypatch.setattr(redaction, "_known_secrets", set())
    yield


# --- URL userinfo -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/shop", f"postgresql://app:{MASK}@db:5432/shop"),
        ("postgres://app:s3cret@db/shop", f"postgres://app:{MASK}@db/shop"),
        ("postgresql://app:p%40ss%21@db/shop", f"postgresql://app:{MASK}@db/shop"),
        ("postgresql://app:s3cret@[::1]:5432/shop", f"postgresql://app:{MASK}@[::1]:5432/shop"),
        ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@minio:9000/b", f"s3://AKIAEXAMPLE:{MASK}@minio:9000/b"),
        (
            "cannot connect to postgresql://a:one1@h1/d, tried postgresql://b:two2@h2/d",
            f"cannot connect to postgresql://a:{MASK}@h1/d, tried postgresql://b:{MASK}@h2/d",
        ),
    ],
)
def test_the_password_of_a_url_is_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app@db:5432/shop",
        "postgresql://db:5432/shop",
        "migration 0002 failed at 0002_orders.sql:12: relation shop.orders does not exist",
        "time 12:30:45 and ratio 3:4",
        "",
    ],
)
def test_text_without_a_password_is_unchanged(text: str) -> None:
    assert redact(text) == text


# --- keyword `password=` ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=db password=s3cret dbname=shop", f"host=db password={MASK} dbname=shop"),
        ("host=db password = 's3cret' dbname=shop", f"host=db password = '{MASK}' dbname=shop"),
        ('host=db password="s3cret" dbname=shop', f'host=db password="{MASK}" dbname=shop'),
        ("PASSWORD=s3cret", f"PASSWORD={MASK}"),
        ("sslpassword=keypass port=5432", f"sslpassword={MASK} port=5432"),
        ("password: s3cret", f"password: {MASK}"),
        ("?user=app&password=s3cret&sslmode=require", f"?user=app&password={MASK}&sslmode=require"),
        ("aws_secret_access_key=wJalrXUtnFEMI", f"aws_secret_access_key={MASK}"),
    ],
)
def test_keyword_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- registered secrets -----------------------------------------------------------------------------


def test_a_registered_secret_is_masked_wherever_it_appears() -> None:
    register_secret("Zq9-secret!")
    echoed = "invalid input syntax for type integer: \"Zq9-secret!\" (LINE 1: SELECT 'Zq9-secret!')"
    assert redact(echoed) == f"invalid input syntax for type integer: \"{MASK}\" (LINE 1: SELECT '{MASK}')"


def test_a_registered_secret_is_masked_in_its_url_encoded_form_too() -> None:
    register_secret("Zq9-secret!")
    assert redact("dsn ends with Zq9-secret%21") == f"dsn ends with {MASK}"


def test_the_password_of_a_registered_url_is_learnt_decoded() -> None:
    register_url("postgresql://app:Canary-9f3b%21x@db/shop")
    assert redact("server said: Canary-9f3b!x") == f"server said: {MASK}"
    assert redact("Canary-9f3b%21x") == MASK


def test_the_password_of_registered_keywords_is_learnt() -> None:
    register_url("host=db password=Kw-pass-77 dbname=shop")
    assert redact("echo Kw-pass-77 back") == f"echo {MASK} back"


def test_the_longest_overlapping_secret_is_masked_whole() -> None:
    register_secret("abcd")
    register_secret("abcdefgh")
    assert redact("x abcdefgh y") == f"x {MASK} y"


def test_registering_nothing_masks_nothing() -> None:
    register_secret(None)
    register_secret("")
    register_url(None)
    register_url("postgresql://app@db/shop")
    assert redact("app db shop") == "app db shop"


def test_secrets_from_the_environment_are_learnt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "Env-pg-pass-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Env-aws-key-2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:Env-url-pass-3@db/shop")

    register_environment()

    text = "Env-pg-pass-1 / Env-aws-key-2 / Env-url-pass-3"
    assert redact(text) == f"{MASK} / {MASK} / {MASK}"


# --- redact_obj -------------------------------------------------------------------------------------


def test_redact_obj_masks_every_string_in_nested_dicts_and_lists() -> None:
    register_secret("Zq9-secret!")
    report = {
        "outcome": "RolledBack",
        "database": "app@db:5432/shop",
        "error": {
            "message": "cannot connect to postgresql://app:s3cret@db/shop",
            "statement": "SELECT 'Zq9-secret!'::int",
            "line": 3,
        },
        "verification": {
            "passed": False,
            "checks": [
                {"name": "echo", "passed": False, "actual": "Zq9-secret!", "expected": "x"},
                {"name": "dsn", "passed": True, "message": "host=db password=s3cret"},
            ],
        },
        "warnings": ("password=s3cret",),
        "rows": {"before": 10, "after": None},
    }

    assert redact_obj(report) == {
        "outcome": "RolledBack",
        "database": "app@db:5432/shop",
        "error": {
            "message": f"cannot connect to postgresql://app:{MASK}@db/shop",
            "statement": f"SELECT '{MASK}'::int",
            "line": 3,
        },
        "verification": {
            "passed": False,
            "checks": [
                {"name": "echo", "passed": False, "actual": MASK, "expected": "x"},
                {"name": "dsn", "passed": True, "message": f"host=db password={MASK}"},
            ],
        },
        "warnings": [f"password={MASK}"],
        "rows": {"before": 10, "after": None},
    }


@pytest.mark.parametrize("value", [None, 0, 3.5, True, "plain text"])
def test_redact_obj_leaves_values_without_secrets_alone(value: object) -> None:
    assert redact_obj(value) == value


def test_a_quoted_keyword_password_with_spaces_is_masked() -> None:
    text = "host=db password='correct horse battery' dbname=shop"
    assert "horse" not in redact(text)


def test_the_password_of_registered_quoted_keywords_is_learnt() -> None:
    register_url("host=db password='correct horse' dbname=shop")
    assert redact("echo correct horse back") == f"echo {MASK} back"


@pytest.mark.parametrize("text", ['{"password": "hunter2"}', "{'password': 'hunter2'}"])
def test_a_password_key_in_json_or_a_python_repr_is_masked(text: str) -> None:
    assert "hunter2" not in redact(text)


# --- SQL `PASSWORD '...'` ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE ROLE app LOGIN PASSWORD 's3cret'", f"CREATE ROLE app LOGIN PASSWORD '{MASK}'"),
        ("ALTER USER x WITH PASSWORD $$p4ss$$", f"ALTER USER x WITH PASSWORD '{MASK}'"),
        ("ALTER ROLE x PASSWORD $pw$p;a'ss$pw$ LOGIN", f"ALTER ROLE x PASSWORD '{MASK}' LOGIN"),
        (
            "CREATE ROLE x ENCRYPTED PASSWORD 'md5abc' VALID UNTIL '2030-01-01'",
            f"CREATE ROLE x ENCRYPTED PASSWORD '{MASK}' VALID UNTIL '2030-01-01'",
        ),
        (
            "alter role x unencrypted password 'it''s me' login",
            f"alter role x unencrypted password '{MASK}' login",
        ),
        ("ALTER ROLE x PASSWORD E'it\\'s \\\\ me' LOGIN", f"ALTER ROLE x PASSWORD '{MASK}' LOGIN"),
        ("ALTER ROLE x PASSWORD U&'d\\0061t' LOGIN", f"ALTER ROLE x PASSWORD '{MASK}' LOGIN"),
        ("CREATE ROLE x PASSWORD\n    'multi line'", f"CREATE ROLE x PASSWORD\n    '{MASK}'"),
        ("OPTIONS (user 'app', password 'fdw-pass')", f"OPTIONS (user 'app', password '{MASK}')"),
        # A statement excerpt clipped inside the literal is masked to its end.
        ("CREATE ROLE app LOGIN PASSWORD 'a-very-long-passw…", f"CREATE ROLE app LOGIN PASSWORD '{MASK}'"),
        ("ALTER ROLE x PASSWORD $$cut sho", f"ALTER ROLE x PASSWORD '{MASK}'"),
    ],
)
def test_sql_password_literals_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ALTER ROLE app PASSWORD NULL",
        'password authentication failed for user "app"',
        "SELECT count(*) FROM passwords",
    ],
)
def test_sql_without_a_password_literal_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_a_sql_password_is_masked_inside_a_report() -> None:
    report = {
        "error": {"message": 'role "x" does not exist', "statement": "ALTER USER x WITH PASSWORD $$p$$"}
    }
    assert redact_obj(report) == {
        "error": {"message": 'role "x" does not exist', "statement": f"ALTER USER x WITH PASSWORD '{MASK}'"}
    }


# --- only secrets: names survive ----------------------------------------------------------------------


def test_an_access_key_id_is_not_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE7")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Env-aws-key-2")

    register_environment()

    text = "s3://akiaexample7-backups/shop (key AKIAEXAMPLE7) signed with Env-aws-key-2"
    assert redact(text) == f"s3://akiaexample7-backups/shop (key AKIAEXAMPLE7) signed with {MASK}"


@pytest.mark.parametrize(
    "text",
    [
        "table shop_orders and workshop and shops",
        "s3://shopbucket/prefix",
        "index orders_shop_idx",
    ],
)
def test_a_registered_secret_inside_a_longer_name_is_left_alone(text: str) -> None:
    register_secret("shop")
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('relation "shop" does not exist', f'relation "{MASK}" does not exist'),
        ("password shop.", f"password {MASK}."),
        ("shop", MASK),
        ("postgresql://app:shop@db/x", f"postgresql://app:{MASK}@db/x"),
    ],
)
def test_a_registered_secret_standing_alone_in_free_text_is_masked(text: str, expected: str) -> None:
    """In free text the registry cannot tell the password from a name that equals it, so it masks it."""
    register_secret("shop")
    assert redact(text) == expected


def test_a_secret_that_begins_or_ends_with_a_symbol_is_masked_next_to_anything() -> None:
    register_secret("!Zq9-secret!")
    assert redact("x!Zq9-secret!y") == f"x{MASK}y"


def test_a_password_that_is_also_a_table_or_bucket_name_does_not_mangle_report_identifiers() -> None:
    """Identifier fields hold names the engine read from the catalog or built itself: never masked by the
    registry (a location must stay usable as `restore --from`); free text around them still is."""
    register_secret("orders")
    report = {
        "outcome": "RolledBack",
        "rowChanges": [{"table": "public.orders", "before": 3, "after": 1}],
        "backup": {"id": "20250301T120000Z-ab12", "location": "s3://orders/shop/20250301T120000Z-ab12"},
        "restoredFrom": "s3://orders/shop/20250301T120000Z-ab12",
        "drift": {"differences": [{"kind": "table", "object": "public.orders", "detail": "only in orders"}]},
        "pending": ["0002"],
        "error": {"message": 'relation "orders" is locked', "statement": "LOCK orders"},
    }

    safe = redact_obj(report)

    assert isinstance(safe, dict)
    assert safe["rowChanges"][0]["table"] == "public.orders"
    assert safe["backup"]["location"] == "s3://orders/shop/20250301T120000Z-ab12"
    assert safe["restoredFrom"] == "s3://orders/shop/20250301T120000Z-ab12"
    assert safe["drift"]["differences"][0]["object"] == "public.orders"
    assert safe["drift"]["differences"][0]["detail"] == f"only in {MASK}"
    assert safe["error"] == {"message": f'relation "{MASK}" is locked', "statement": f"LOCK {MASK}"}


def test_identifier_fields_still_lose_a_password_a_pattern_recognises() -> None:
    report = {"location": "s3://AKIAX:wJalrXUtnFEMI@minio:9000/b", "database": "host=db password=s3cret"}
    assert redact_obj(report) == {
        "location": f"s3://AKIAX:{MASK}@minio:9000/b",
        "database": f"host=db password={MASK}",
    }


# --- web-identity tokens ------------------------------------------------------------------------------

# The shape of a ServiceAccount token: base64url JSON header and payload, a signature (made up here).
TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9.eyJhdWQiOlsicGd3YXJkZW4tbWluaW8iXSwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50"
    "OmRlZmF1bHQ6ZGVmYXVsdCJ9.c2lnbmF0dXJlLW5vdC1yZWFs_-x"
)


@pytest.mark.parametrize(
    "text",
    [
        f"AssumeRoleWithWebIdentity refused WebIdentityToken={TOKEN}: expired",
        f'{{"token": "{TOKEN}"}}',
        f"Authorization: Bearer {TOKEN}",
    ],
)
def test_a_json_web_token_is_masked_wherever_it_stands_even_unregistered(text: str) -> None:
    assert TOKEN not in redact(text)
    assert MASK in redact(text)
    assert TOKEN not in str(redact_obj({"location": text, "error": {"message": text}}))


def test_the_web_identity_token_file_is_learnt_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A token of an unusual shape (not a JWT) is masked too, once its file is named in the environment."""
    token_file = tmp_path / "token"
    token_file.write_text("opaque-web-identity-token-1234\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    register_environment()
    assert redact("token opaque-web-identity-token-1234 refused") == f"token {MASK} refused"


def test_a_missing_token_file_is_no_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "absent"))
    register_environment()
    assert redact("nothing to hide") == "nothing to hide"
