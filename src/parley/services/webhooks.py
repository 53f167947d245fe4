"""Events for lenders' systems by webhook: signed, delivered at least once, retried with
exponential back-off.

`emit` is an outbox: it writes one `webhook_delivery` row per matching subscription in the
caller's transaction, so an event exists exactly when the change that caused it committed.
`deliver_due` (run by the worker, or `parley webhooks deliver`) posts what is due.

Each request carries `Parley-Event-Id`, `Parley-Event` and
`Parley-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; receivers
check it with `verify_signature` (or the same three lines in their language) and drop events
whose id they have already seen. Back-off after a failed attempt n (1-based) is
min(30 s × 2^(n-1), 6 h); after `MAX_ATTEMPTS` the delivery is marked failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session as OrmSession

from parley.errors import InvalidInput, NotFound
from parley.services.context import Context
from parley.store.models.web import WebhookDelivery, WebhookSubscription

MAX_ATTEMPTS = 10
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
EVENTS = ("complaint.filed", "complaint.resolved", "agreement.accepted", "payment.posted",
          "placement.started", "placement.ended", "legal_referral.opened", "legal_referral.closed")


@dataclass(frozen=True)
class Response:
    """What a delivery attempt got back: the HTTP status (0 = no answer) and an error text."""

    status: int
    error: str = ""


Sender = Callable[[str, bytes, dict[str, str]], Response]


def _aad(sub_id: str) -> str:
    return f"webhook_subscription.secret:{sub_id}"


def subscribe(ctx: Context, url: str, events: tuple[str, ...] = ("*",)) -> tuple[str, str]:
    """Register an endpoint; returns (subscription id, signing secret — shown once)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.netloc or len(url) > 1000:
        raise InvalidInput("must be an http(s) URL", record="webhook", field="url")
    if ctx.settings.env == "production" and parsed.scheme != "https":
        raise InvalidInput("must be https in production", record="webhook", field="url")
    bad = [e for e in events if e != "*" and e not in EVENTS]
    if bad or not events:
        raise InvalidInput(f"unknown event {bad[0] if bad else ''!r}", record="webhook", field="events")
    sid = f"wh-{uuid.uuid4().hex[:12]}"
    secret = "whsec_" + secrets.token_urlsafe(32)
    with ctx.db.transaction() as conn:
        conn.execute(insert(WebhookSubscription).values(
            id=sid, url=url, events=",".join(sorted(set(events))),
            secret_enc=ctx.keyring.encrypt(secret, _aad(sid)), created_at=ctx.clock.now()))
    return sid, secret


def list_subscriptions(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = OrmSession(bind=conn).execute(
            select(WebhookSubscription).order_by(WebhookSubscription.created_at)).scalars().all()
        return [{"id": r.id, "url": r.url, "events": r.events.split(","),
                 "created_at": r.created_at.isoformat(),
                 "disabled_at": r.disabled_at.isoformat() if r.disabled_at else None} for r in rows]


def disable(ctx: Context, sub_id: str) -> None:
    with ctx.db.transaction() as conn:
        res = conn.execute(update(WebhookSubscription).where(WebhookSubscription.id == sub_id)
                           .values(disabled_at=ctx.clock.now()))
        if not res.rowcount:
            raise NotFound(f"unknown webhook {sub_id!r}")


def emit(conn: Connection, kind: str, payload: dict[str, Any], *, at: datetime,
         event_id: str | None = None) -> int:
    """Queue event `kind` for every live subscription that wants it, in the caller's
    transaction; returns how many deliveries were queued."""
    subs = conn.execute(select(WebhookSubscription.id, WebhookSubscription.events)
                        .where(WebhookSubscription.disabled_at.is_(None))).all()
    wanted = [s.id for s in subs if "*" in s.events.split(",") or kind in s.events.split(",")]
    if not wanted:
        return 0
    eid = event_id or f"ev-{uuid.uuid4().hex}"
    body = json.dumps({"id": eid, "type": kind, "created_at": at.isoformat(), "data": payload},
                      sort_keys=True, ensure_ascii=False, default=str)
    conn.execute(insert(WebhookDelivery), [
        {"subscription_id": sid, "event_id": eid, "kind": kind, "payload": body,
         "status": "pending", "attempts": 0, "next_attempt_at": at, "created_at": at,
         "last_error": ""} for sid in wanted])
    return len(wanted)


def sign(secret: str, body: bytes, at: datetime) -> str:
    t = int(at.timestamp())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: datetime,
                     tolerance: timedelta = timedelta(minutes=5)) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance` of `now`."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now.timestamp() - t) > tolerance.total_seconds():
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


def http_sender(timeout: float = 10.0) -> Sender:
    import httpx

    def send(url: str, body: bytes, headers: dict[str, str]) -> Response:
        try:
            r = httpx.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return Response(0, str(exc)[:500])
        return Response(r.status_code, "" if r.is_success else r.text[:500])

    return send


def deliver_due(ctx: Context, send: Sender | None = None, *, limit: int = 100) -> dict[str, int]:
    """Post every delivery that is due (oldest first); returns counts by result. Each delivery
    is claimed and settled in its own short transaction, so a slow endpoint holds no lock."""
    send = send or http_sender()
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        due = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.payload, WebhookDelivery.event_id,
                   WebhookDelivery.kind, WebhookDelivery.attempts, WebhookSubscription.id,
                   WebhookSubscription.url, WebhookSubscription.secret_enc)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   WebhookSubscription.disabled_at.is_(None))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
        ).all()
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    for did, payload, event_id, kind, attempts, sub_id, url, secret_enc in due:
        secret = ctx.keyring.decrypt(secret_enc, _aad(sub_id))
        body = payload.encode()
        headers = {"Content-Type": "application/json", "Parley-Event-Id": event_id,
                   "Parley-Event": kind, "Parley-Signature": sign(secret, body, ctx.clock.now())}
        result = send(url, body, headers)
        n = attempts + 1
        values: dict[str, Any] = {"attempts": n, "last_status_code": result.status or None,
                                  "last_error": result.error}
        if 200 <= result.status < 300:
            values.update(status="delivered", delivered_at=ctx.clock.now())
            counts["delivered"] += 1
        elif n >= MAX_ATTEMPTS:
            values.update(status="failed")
            counts["failed"] += 1
        else:
            values.update(next_attempt_at=ctx.clock.now() + backoff(n))
            counts["retrying"] += 1
        with ctx.db.transaction() as conn:
            conn.execute(update(WebhookDelivery).where(WebhookDelivery.id == did,
                                                       WebhookDelivery.status == "pending")
                         .values(**values))
    return counts
