"""Generated docs are up to date: the resource pages and the chart's values table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GEN_DOCS = REPO / "hack" / "gen-docs.py"


def test_generated_docs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_DOCS), "--check"], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stderr


def test_each_resource_page_documents_every_spec_and_status_field() -> None:
    from pgwarden.api.crd import KINDS

    for kind in KINDS:
        page = (REPO / "docs" / "resources" / f"{kind.singular}.md").read_text()
        for model in (kind.spec, kind.status):
            for field in model.model_fields.values():
                assert f"| `{field.alias}`" in page, f"{kind.kind}: {field.alias} is not documented"
        for column in kind.columns:
            assert f"`{column.json_path}`" in page
