"""POST /api/v1/imports/{kind}: import one file of the loan book, all or nothing."""

from __future__ import annotations

import re
import tempfile
from enum import StrEnum
from pathlib import Path

from fastapi import UploadFile

from parley.errors import Forbidden, InvalidInput
from parley.faces.api.deps import ActorDep
from parley.faces.api.routing import api_router
from parley.faces.api.schemas import ImportOut
from parley.faces.web.auth import CtxDep
from parley.services.imports import import_file

router = api_router("imports", "/imports")

MAX_BYTES = 512 * 1024 * 1024
IMPORT_ROLES = frozenset({"administrator"})


class ImportKind(StrEnum):
    borrowers = "borrowers"
    loans = "loans"
    installments = "installments"
    payments = "payments"


def _safe_name(name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "upload").name)[:100] or "upload"
    return base if not base.startswith(".") else "upload" + base


@router.post("/{kind}", response_model=ImportOut)
def import_upload(kind: ImportKind, file: UploadFile, ctx: CtxDep, actor: ActorDep) -> ImportOut:
    """Upload a .csv or .jsonl file of `kind`. One bad row writes nothing; the answer names the
    row and field (all problems found, up to 20, in `errors`)."""
    if actor.role not in IMPORT_ROLES:
        raise Forbidden("not allowed for your role")
    with tempfile.TemporaryDirectory(prefix="parley-import-") as tmp:
        path = Path(tmp) / _safe_name(file.filename)
        size = 0
        with path.open("wb") as out:
            while chunk := file.file.read(1024 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise InvalidInput("file too large", record=path.name, field="file")
                out.write(chunk)
        report = import_file(ctx, kind.value, path)
    return ImportOut.model_validate(report.as_dict())
