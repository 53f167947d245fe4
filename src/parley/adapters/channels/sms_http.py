"""SMS through a generic JSON webhook provider (httpx).

POST ``url`` with ``{"to", "text", "idempotency_key", "reference"}`` and the header
``Idempotency-Key``; a 2xx answer with ``{"id": ...}`` (and optionally ``"duplicate": true``)
is a receipt. 408/429/5xx and network errors are transient; other 4xx are permanent. The
provider is expected to deduplicate by the key (as Stripe-style APIs do), so ``idempotent``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from parley.adapters.channels.base import ChannelError, Message, ProviderReceipt

_TRANSIENT = {408, 425, 429}


class HttpSmsProvider:
    name = "sms_http"
    channels = frozenset({"sms"})
    idempotent = True

    def __init__(self, url: str, *, token: str = "", timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"SMS webhook URL must be http(s): {url!r}")
        self.url, self.token, self.timeout = url, token, timeout
        self._client = client

    def send(self, message: Message) -> ProviderReceipt:
        headers = {"Idempotency-Key": message.idempotency_key, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = {"to": message.to, "text": message.body,
                   "idempotency_key": message.idempotency_key, "reference": message.reference}
        try:
            if self._client is not None:
                resp = self._client.post(self.url, json=payload, headers=headers, timeout=self.timeout)
            else:
                with httpx.Client(timeout=self.timeout) as client:
                    resp = client.post(self.url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"SMS provider unreachable: {exc}", transient=True) from exc
        if resp.status_code >= 500 or resp.status_code in _TRANSIENT:
            raise ChannelError(f"SMS provider answered {resp.status_code}", transient=True)
        if resp.status_code >= 400:
            raise ChannelError(f"SMS provider refused: {resp.status_code} {resp.text[:200]}",
                               transient=False)
        try:
            data: Any = resp.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return ProviderReceipt(self.name, str(data.get("id", "")), message.idempotency_key,
                               datetime.now(UTC), duplicate=bool(data.get("duplicate", False)),
                               detail=f"{resp.status_code}")
