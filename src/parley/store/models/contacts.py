"""Contacts and what governs them: holds, opt-outs, stated preferences, every contact attempt,
and the tamper-evident audit log (gate decisions and other events, chained per borrower)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class Hold(Base):
    """A reason to stop (some) contact: dispute, cease, legal_representation, bankruptcy,
    deceased, vulnerable, complaint_investigation. Debt-specific when loan_id is set.
    Active while ended_at is NULL; which purposes it blocks is the rule pack's business."""

    __tablename__ = "hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    loan_id: Mapped[str | None] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32), default="staff")  # borrower, staff, complaint, import
    note: Mapped[str] = mapped_column(Text, default="")
    complaint_id: Mapped[str | None] = mapped_column(ID)
    created_by: Mapped[str] = mapped_column(ID, default="system")


class OptOut(Base):
    """A request not to be contacted through a channel (optionally one address/number).
    third_party_id set: the opt-out (or refusal) belongs to that third party."""

    __tablename__ = "opt_out"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    third_party_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    address_index: Mapped[str | None] = mapped_column(String(320))  # blind index of a phone, or an e-mail
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactPreference(Base):
    """Stated preferences, e.g. kind='inconvenient_window' params='{"from":"12:00","to":"14:00"}'
    (local time), or kind='preferred_channel' params='{"channel":"sms"}'. JSON text."""

    __tablename__ = "contact_preference"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactAttempt(Base):
    """Every contact that happened (or was attempted), recorded in the same transaction as the
    gate's permit. Identified: who (collector, agency, badge), when, channel, to whom, content
    or template, outcome, recording reference. Append-only except for the outcome fields,
    which are filled once (result IS NULL → set)."""

    __tablename__ = "contact_attempt"
    __table_args__ = (
        Index("ix_contact_attempt_borrower_at", "borrower_id", "at"),
        UniqueConstraint("idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"))
    loan_id: Mapped[str | None] = mapped_column(ID)
    person_role: Mapped[str] = mapped_column(String(16))  # borrower, third_party
    third_party_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))  # call, sms, email, visit, interview
    to_index: Mapped[str] = mapped_column(String(320), default="")  # phone blind index, e-mail, or address key
    to_masked: Mapped[str] = mapped_column(String(320), default="")
    purpose: Mapped[str] = mapped_column(String(24))  # collection, agreement_service, location
    direction: Mapped[str] = mapped_column(String(8), default="outbound")
    initiated_by: Mapped[str] = mapped_column(String(12), default="collector")  # collector, consumer, system
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    collector_id: Mapped[str | None] = mapped_column(ID)
    agency_id: Mapped[str | None] = mapped_column(ID)
    badge: Mapped[str | None] = mapped_column(String(32))
    template_id: Mapped[str | None] = mapped_column(ID)
    content: Mapped[str] = mapped_column(Text, default="")
    consent_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(16))  # not_connected … wrong_party; NULL = pending
    result_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recording_ref: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str] = mapped_column(Text, default="")
    queue_item_id: Mapped[int | None] = mapped_column(Integer)
    decision_id: Mapped[int | None] = mapped_column(Integer)  # audit_log.id of the permit decision
    idempotency_key: Mapped[str | None] = mapped_column(String(200))


class AuditLog(Base):
    """Append-only, tamper-evident log. Each chain (a borrower id, or '_system') is a hash
    chain: hash = HMAC(key, prev_hash || canonical payload); seq has no gaps; the chain head is
    also stored on the borrower row so deleting the newest entry is detected too."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("chain_key", "seq"), Index("ix_audit_log_kind_at", "kind", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_key: Mapped[str] = mapped_column(ID)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))  # gate.decision, agreement.accepted, complaint.filed, …
    actor: Mapped[str] = mapped_column(ID, default="system")
    borrower_id: Mapped[str | None] = mapped_column(ID, index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")  # e.g. loan id, agreement id
    outcome: Mapped[str] = mapped_column(String(16), default="")  # allow / deny for gate decisions
    rules: Mapped[str] = mapped_column(String(1000), default="")  # ' rule.a rule.b ' deciding rules
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON: inputs as seen, decision, reasons
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class DecisionReason(Base):
    """One row per (gate decision, deciding rule), for 'denials grouped by rule' on the
    compliance desk. Derived from audit_log.payload; `parley audit verify` checks they agree."""

    __tablename__ = "decision_reason"
    __table_args__ = (Index("ix_decision_reason_rule_at", "rule_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"), index=True)
    borrower_id: Mapped[str] = mapped_column(ID)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    rule_id: Mapped[str] = mapped_column(String(80))
    effect: Mapped[str] = mapped_column(String(8))  # deny, advise
    channel: Mapped[str] = mapped_column(String(16))
    collector_id: Mapped[str | None] = mapped_column(ID)
