"""How the API reads a JSON body: as JSON, but refusing an object with the same key twice.

Python's ``json`` keeps the last of two equal keys, so ``{"loan_id": "L1", "loan_id": "L2"}``
was a payment to L2 while a proxy, a log or the lender's own check may have read L1. RFC 8259
leaves duplicate names to the parser; I-JSON (RFC 7493) forbids them, and so does Parley: the
answer is a 422 naming the key's path (``request.at``, ``history[1].result``), the same shape as
every other invalid field, and nothing is done.

Every API router is built with ``route_class=JsonRoute``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

Path = tuple[str | int, ...]


class _Duplicated(dict[str, Any]):
    """An object that had ``key`` more than once (only ever seen while looking for it)."""

    key: str


class DuplicateKey(HTTPException):
    """An object in the body has the key at ``path`` twice. An HTTPException only so that
    FastAPI's body reader lets it through (it turns anything else into a bare 400); `JsonRoute`
    answers it as a validation error."""

    def __init__(self, path: Path) -> None:
        super().__init__(status_code=422, detail="duplicate key")
        self.path = path


def _first_duplicate(value: Any) -> Path:
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Duplicated):
            return (*path, node.key)
        if isinstance(node, dict):
            items: list[tuple[str | int, Any]] = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        stack.extend(((*path, k), v) for k, v in reversed(items))  # first in document order
    raise AssertionError("a duplicate was seen but not found")  # pragma: no cover


def loads_unique(raw: bytes | str) -> Any:
    """``json.loads``, except that an object with a key twice raises DuplicateKey(path)."""
    seen_duplicate = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_duplicate
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen_duplicate = True
        dup = _Duplicated(obj)
        keys: set[str] = set()
        for k, _ in items:
            if k in keys:
                dup.key = k
                break
            keys.add(k)
        return dup

    value = json.loads(raw, object_pairs_hook=pairs)
    if seen_duplicate:
        raise DuplicateKey(_first_duplicate(value))
    return value


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
