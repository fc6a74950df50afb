"""Resources as the operator receives them: the examples' specs with the metadata the apiserver adds."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Obj = dict[str, Any]


def example(file: str, kind: str) -> Obj:
    for document in yaml.safe_load_all((EXAMPLES / file).read_text()):
        if document and document["kind"] == kind:
            return copy.deepcopy(document)
    raise LookupError(f"{file} has no {kind}")


def with_metadata(
    body: Obj, *, generation: int = 1, uid: str = "0f0e0d0c-1111-2222-3333-444455556666"
) -> Obj:
    body["metadata"].update(
        namespace="shop",
        uid=uid,
        generation=generation,
        creationTimestamp="2025-03-01T11:00:00Z",
    )
    return body


@pytest.fixture
def resource() -> Callable[..., Obj]:
    """`resource("migration-shop.yaml", "DatabaseMigration", generation=2)`."""

    def make(file: str, kind: str, **metadata: Any) -> Obj:
        return with_metadata(example(file, kind), **metadata)

    return make
