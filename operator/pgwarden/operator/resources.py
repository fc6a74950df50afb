"""The resources as the pure modules read them: typed models from the JSON the apiserver sends.

The spec is read strictly (a spec the models refuse is the InvalidSpec condition). The status is the
operator's own earlier decision and is read leniently: a field an older version wrote that no longer fits is
dropped rather than taken for a bad spec, and the next decision writes it anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from pgwarden.api.backup import DatabaseBackup, DatabaseBackupStatus
from pgwarden.api.common import ResourceStatus
from pgwarden.api.migration import DatabaseMigration, DatabaseMigrationStatus
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus
from pgwarden.operator.objects import Obj

Resource = DatabaseMigration | DatabaseBackup | DatabaseRestore
M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=ResourceStatus)
R = TypeVar("R", DatabaseMigration, DatabaseBackup, DatabaseRestore)

MODELS: dict[str, type[Resource]] = {
    "DatabaseMigration": DatabaseMigration,
    "DatabaseBackup": DatabaseBackup,
    "DatabaseRestore": DatabaseRestore,
}
STATUS_MODELS: dict[str, type[ResourceStatus]] = {
    "DatabaseMigration": DatabaseMigrationStatus,
    "DatabaseBackup": DatabaseBackupStatus,
    "DatabaseRestore": DatabaseRestoreStatus,
}


def lenient(model: type[M], data: Obj | None) -> M:
    """`data` as `model`, without the top-level fields that do not fit it (a report or an old status may
    carry more, or other, than the model knows)."""
    current = dict(data or {})
    for _ in range(2):
        try:
            return model.model_validate(current)
        except ValidationError as error:
            bad = {str(problem["loc"][0]) for problem in error.errors() if problem["loc"]}
            current = {key: value for key, value in current.items() if key not in bad}
    return model()


def merged(base: S, update: S) -> S:
    """`base` with every field `update` set replacing its own."""
    return base.model_copy(update={name: getattr(update, name) for name in update.model_fields_set})


def copy_reported(report: BaseModel, status: BaseModel, names: Iterable[str]) -> None:
    """Each of `names` the report gave a value, set on `status` under the same name: status shows what the run
    reported and leaves unset what it did not."""
    given = report.model_fields_set
    for name in names:
        value = getattr(report, name)
        if name in given and value is not None:
            setattr(status, name, value)


def read(body: Obj) -> Resource:
    """A resource as its model; raises ValidationError when the spec does not fit the model."""
    kind = str(body.get("kind"))
    if kind not in MODELS:
        raise ValueError(f"{kind!r} is not a pgwarden kind; expected one of {', '.join(MODELS)}")
    resource = MODELS[kind].model_validate({key: value for key, value in body.items() if key != "status"})
    return resource.model_copy(update={"status": lenient(STATUS_MODELS[kind], body.get("status"))})


def typed(model: type[R], body: Obj) -> R:
    """`read`, for a caller that knows the kind."""
    resource = read(body)
    assert isinstance(resource, model), f"{body.get('kind')} is not a {model.__name__}"
    return resource
