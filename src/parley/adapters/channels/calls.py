"""Calls are not sent by a machine: they are tasks in a collector's queue. This adapter builds
the click-to-call link a collector's softphone or PBX opens, from a URL template.

The template may use ``{to}`` (E.164, URL-encoded), ``{item}`` (queue item id), ``{key}``
(the idempotency key, so the PBX can tie its recording to the contact attempt) and
``{collector}``. The default ``tel:{to}`` works with any desktop phone handler.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import quote

from parley.errors import InvalidInput

FIELDS = frozenset({"to", "item", "key", "collector"})


@dataclass(frozen=True, slots=True)
class ClickToCall:
    """url_template: e.g. ``tel:{to}`` or ``https://pbx.example/dial?to={to}&ref={key}``."""

    url_template: str = "tel:{to}"

    def __post_init__(self) -> None:
        names = {f for _, f, _, _ in string.Formatter().parse(self.url_template) if f}
        unknown = names - FIELDS
        if unknown:
            raise InvalidInput(f"unknown field(s) {sorted(unknown)}; use {sorted(FIELDS)}",
                               record="click_to_call", field="url_template")

    def url(self, *, to: str, item: int, key: str, collector: str) -> str:
        return self.url_template.format(to=quote(to, safe="+"), item=item,
                                        key=quote(key, safe=""), collector=quote(collector, safe=""))
