"""How the API reads a JSON body: as JSON, but refusing an object with the same key twice.

Python's ``json`` keeps the last of two equal keys, so ``{"loan_id": "L1", "loan_id": "L2"}``
was a payment to L2 while a proxy, a log or the lender's own check may have read L1. RFC 8259
leaves duplicate names to the parser; I-JSON (RFC 7493) forbids them, and so does Parley: the
answer is a 422 naming the key's path (``request.at``, ``history[1].result``), the same shape as
every other invalid field, and nothing is done.

Every API router comes from ``api_router``, which gives it ``JsonRoute`` and the shared
error responses.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from parley.adapters import records
from parley.adapters.records import JsonPath


class DuplicateKey(HTTPException):
    """An object in the body has the key at ``path`` twice. An HTTPException only so that
    FastAPI's body reader lets it through (it turns anything else into a bare 400); `JsonRoute`
    answers it as a validation error."""

    def __init__(self, path: JsonPath) -> None:
        super().__init__(status_code=422, detail="duplicate key")
        self.path = path


def loads_unique(raw: bytes | str) -> Any:
    """The body as JSON (``adapters.records.loads_unique``, the importers' reader too), with a
    key given twice raised as DuplicateKey(path)."""
    try:
        return records.loads_unique(raw)
    except records.DuplicateKeyError as exc:
        raise DuplicateKey(exc.path) from None


class _UniqueKeysRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_unique(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An API route whose JSON body may not repeat a key (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def unique_keys(request: Request) -> Response:
            try:
                return await handler(_UniqueKeysRequest(request.scope, request.receive))
            except DuplicateKey as exc:
                key = exc.path[-1]
                raise RequestValidationError([{
                    "type": "duplicate_key", "loc": ("body", *exc.path),
                    "msg": f"duplicate key {key!r}: give each field once", "input": None,
                }]) from None

        return unique_keys


def api_router(tag: str, prefix: str = "") -> APIRouter:
    """An API router: its routes read bodies with ``JsonRoute`` and document the shared errors.
    Built here so that no router can forget either."""
    from parley.faces.api.schemas import ERROR_RESPONSES

    return APIRouter(prefix=prefix, tags=[tag], responses=ERROR_RESPONSES, route_class=JsonRoute)
