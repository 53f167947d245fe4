"""The contact queue written by the daily run and drained by the worker (and collectors)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime, key_string

# The channels the worker leases and carries out itself (services.worker.WORKER_CHANNELS and
# services.placements.TASK_CHANNELS; a test keeps them equal), as literal SQL conditions.
WORKER_LEASED_CHANNELS = ("sms", "email", "agency", "legal")
WORKER_DUE_WHERE = ("status = 'pending' AND channel IN ("
                    + ", ".join(f"'{c}'" for c in WORKER_LEASED_CHANNELS) + ")")
LEASED_WHERE = "status = 'leased'"


class ContactQueueItem(Base):
    """One planned contact. status: pending → leased → sent | denied (rescheduled → pending
    with a later not_before) | dropped | cancelled (agreement or hold) | done (call logged).
    idempotency_key = business_date|loan|action, so re-running a day adds nothing.

    Indexes are what the daily run pays for on every one of its million rows, so each earns
    its place: the key is unique *per borrower* (every key names a loan or agreement of one
    borrower), which lets the same index serve "this borrower's items" (holds, agreements, the
    case page); the worker's lease walks a partial index of the pending items it carries out
    (SMS, e-mail, agency, legal) by channel and not_before, and expired leases by lease_until — one index
    over every pending row made each lease walk past the day's million call tasks (≈ 0.5 s a
    lease at a million accounts); and a collector's queue is a partial index over the rows
    that have a collector (calls), not over every SMS. The partial indexes' conditions are
    literal SQL (``WORKER_DUE_WHERE``, ``LEASED_WHERE``) that the lease queries repeat word
    for word: SQLite uses a partial index only when the query states its condition."""

    __tablename__ = "contact_queue"
    __table_args__ = (
        UniqueConstraint("borrower_id", "idempotency_key"),
        Index("ix_contact_queue_worker_due", "channel", "not_before", "id",
              sqlite_where=text(WORKER_DUE_WHERE), postgresql_where=text(WORKER_DUE_WHERE)),
        Index("ix_contact_queue_leased", "lease_until", "id",
              sqlite_where=text(LEASED_WHERE), postgresql_where=text(LEASED_WHERE)),
        Index("ix_contact_queue_collector", "collector_id", "status",
              sqlite_where=text("collector_id IS NOT NULL"),
              postgresql_where=text("collector_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    business_date: Mapped[date] = mapped_column(Date)
    # No foreign key on purpose: every row is written from a row that has one (the daily run
    # from loans, agreement notices from agreements) and borrowers are never deleted; the
    # per-row check was a quarter of the daily run's million-row queue write on SQLite.
    borrower_id: Mapped[str] = mapped_column(ID)
    loan_id: Mapped[str | None] = mapped_column(ID)
    strategy_id: Mapped[str] = mapped_column(String(64), default="")
    arm: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(64), default="")
    action_kind: Mapped[str] = mapped_column(String(24))  # sms, email, call, interview, field_visit, legal_referral, agency_placement
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(24), default="collection")
    template_id: Mapped[str | None] = mapped_column(ID)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(key_string(12), default="pending")
    collector_id: Mapped[str | None] = mapped_column(ID)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(key_string(200))
    last_reason: Mapped[str] = mapped_column(Text, default="")
    decision_id: Mapped[int | None] = mapped_column(Integer)
    attempt_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
