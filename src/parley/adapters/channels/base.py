"""The one interface every outbound channel implements, and the values it passes.

A channel adapter turns a rendered ``Message`` into a delivery attempt at a provider and returns
a ``ProviderReceipt``. It never decides whether the contact is allowed: the worker asks the
gate for a permit first, in the transaction that records the attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from parley.config import Settings


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered outbound message.

    channel: ``sms`` or ``email`` (a notice of an appointment is an ``sms``).
    to: the E.164 number or e-mail address, in clear (only the adapter sees it).
    body: the text as screened by the gate. subject: e-mail only; empty otherwise.
    idempotency_key: the queue item's key (``queue:<id>``); the same key must never produce
        two deliveries at a provider that honours it.
    reference: an opaque reference for the provider's callbacks (the contact attempt id); empty
        when there is none.
    """

    channel: str
    to: str
    body: str
    idempotency_key: str
    subject: str = ""
    reference: str = ""
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("Message.idempotency_key is required")
        if not self.to:
            raise ValueError("Message.to is required")


@dataclass(frozen=True, slots=True)
class ProviderReceipt:
    """What the provider said.

    provider: the adapter's name (``smtp``, ``sms_http``, ``console``).
    message_id: the provider's id for the message; empty when it gives none.
    duplicate: True when the provider recognised the idempotency key and did not send again.
    accepted_at: when the adapter got the answer (tz-aware UTC).
    detail: the provider's short answer, for the record; empty = none.
    """

    provider: str
    message_id: str
    idempotency_key: str
    accepted_at: datetime
    duplicate: bool = False
    detail: str = ""


class ChannelError(Exception):
    """A send that did not go through. ``transient`` True = try again later (timeouts, 5xx,
    SMTP 4xx); False = it will never go through as it is (bad address, 4xx)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@runtime_checkable
class ChannelAdapter(Protocol):
    """name: short id for the record. channels: the channels it carries.
    idempotent: True when the provider deduplicates by ``idempotency_key`` — then re-sending
    after a crash is safe; False (plain SMTP) makes the worker treat an interrupted send as
    'unconfirmed' instead of sending again."""

    name: str
    channels: frozenset[str]
    idempotent: bool

    def send(self, message: Message) -> ProviderReceipt: ...


def build_channels(settings: Settings, *, console: bool = False) -> dict[str, ChannelAdapter]:
    """The adapters configured in settings, by channel. ``console=True`` (the demo) prints
    every message instead of sending it."""
    from parley.adapters.channels.console import ConsoleProvider
    from parley.adapters.channels.sms_http import HttpSmsProvider
    from parley.adapters.channels.smtp import SmtpProvider

    if console:
        c = ConsoleProvider()
        return {"sms": c, "email": c}
    out: dict[str, ChannelAdapter] = {
        "email": SmtpProvider(settings.smtp_host, settings.smtp_port, settings.smtp_sender)
    }
    if settings.sms_provider == "http":
        if not settings.sms_webhook_url:
            raise ValueError("PARLEY_SMS_WEBHOOK_URL must be set when PARLEY_SMS_PROVIDER=http")
        out["sms"] = HttpSmsProvider(settings.sms_webhook_url,
                                     token=settings.secret_key.get_secret_value())
    else:
        out["sms"] = ConsoleProvider()
    return out
