"""The web and API faces' own state: sessions, one-time codes, rate-limit hits, API keys,
complaints (投诉) with their evidence, case notes, and webhook subscriptions and deliveries.

Secrets are never stored in the clear: session tokens, one-time codes and API keys are kept
as SHA-256 hashes (they are long random values, so a fast hash is enough; one-time codes are
short, so they also carry an attempt limit and a short expiry).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class WebSession(Base):
    """A server-side session. id is sha256(cookie token); the token itself is only in the cookie.

    kind: 'staff' or 'borrower'; subject_id: staff_user.id or borrower.id. stage: 'full', or
    'totp' while a staff member who needs a second factor has given only the password.
    Expires at min(last_seen_at + idle timeout, expires_at); ended_at set = signed out.
    """

    __tablename__ = "web_session"
    __table_args__ = (Index("ix_web_session_subject", "kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    subject_id: Mapped[str] = mapped_column(ID)
    stage: Mapped[str] = mapped_column(String(8), default="full")
    csrf_token: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(16), default="zh-Hans")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str] = mapped_column(String(64), default="")


class OtpCode(Base):
    """A one-time sign-in code sent to a borrower's phone. code_hash = HMAC of the code bound to
    the phone's blind index; used_at set once it signed someone in; attempts counts wrong tries."""

    __tablename__ = "otp_code"
    __table_args__ = (Index("ix_otp_code_phone_index", "phone_index", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone_index: Mapped[str] = mapped_column(String(64))
    borrower_id: Mapped[str | None] = mapped_column(ID)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RateLimitHit(Base):
    """One counted event (a sign-in try, a code request) under a key such as
    'signin:user:alice' or 'otp:ip:10.0.0.1'. Counted per window in the database, so the limit
    holds across processes."""

    __tablename__ = "rate_limit_hit"
    __table_args__ = (Index("ix_rate_limit_hit_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A lender system's API key: key_hash = sha256(key); the key is shown once, at creation.
    role/agency_id scope what it sees exactly as for a staff member with that role."""

    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("key_hash"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(24), default="administrator")
    agency_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Complaint(Base):
    """A complaint (投诉). status: open → acknowledged → resolved (or rejected).
    category: harassment, contact_after_agreement, third_party_contact, wrong_amount,
    identity, other. Deadlines are set when filed from the configured business-day policy.
    assigned_to: staff_user.id or NULL; outcome: free text when resolved."""

    __tablename__ = "complaint"
    __table_args__ = (
        Index("ix_complaint_status_due", "status", "resolve_due_at"),
        Index("ix_complaint_borrower", "borrower_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"))
    loan_id: Mapped[str | None] = mapped_column(ID)
    category: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="portal")  # portal, api, phone, regulator
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    filed_by: Mapped[str] = mapped_column(ID)
    acknowledge_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolve_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assigned_to: Mapped[str | None] = mapped_column(ID)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(Text, default="")
    hold_id: Mapped[int | None] = mapped_column(Integer)


class ComplaintEvidence(Base):
    """A piece of evidence: a contact attempt from the log (contact_attempt_id), or a note."""

    __tablename__ = "complaint_evidence"
    __table_args__ = (UniqueConstraint("complaint_id", "contact_attempt_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaint.id"), index=True)
    contact_attempt_id: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    added_by: Mapped[str] = mapped_column(ID)


class CaseNote(Base):
    """A collector's note on a case (free text, screened before it is shown to anyone else)."""

    __tablename__ = "case_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    loan_id: Mapped[str | None] = mapped_column(ID)
    author_id: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text)


class WebhookSubscription(Base):
    """A lender endpoint that receives events (comma-separated kinds, '*' = all), signed with
    HMAC-SHA256 under its own secret (stored encrypted)."""

    __tablename__ = "webhook_subscription"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    events: Mapped[str] = mapped_column(String(500), default="*")
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one subscription. status: pending → delivered | failed (gave up);
    retried with exponential back-off via next_attempt_at."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        UniqueConstraint("subscription_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscription.id"))
    event_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
