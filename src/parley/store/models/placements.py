"""Placements with outside agencies (委外) and referrals to legal: the history behind
``loan.agency_id``, and the legal team's cases.

``loan.agency_id`` is what access checks read (an agency collector sees only the loans placed
with its agency); ``agency_placement`` is its history, so every placement can be audited and
recalled. A loan has at most one active placement (``ended_at IS NULL``) and at most one open
referral; both are kept under the borrower lock by ``services.placements`` rather than by a
partial unique index, which the schema comparison of the single migration cannot check on both
databases. ``queue_item_id`` is unique, so one queue item can never write two rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class AgencyPlacement(Base):
    """One placement of a loan with an agency, from ``placed_at`` until ``ended_at`` (NULL while
    active). placed_by / ended_by: a staff id, or 'system' for the strategy's placements (then
    ``queue_item_id`` names the queue item). end_reason: 'recalled: …' or 'moved to agency …'."""

    __tablename__ = "agency_placement"
    __table_args__ = (
        UniqueConstraint("queue_item_id"),
        Index("ix_agency_placement_loan", "loan_id", "ended_at"),
        Index("ix_agency_placement_agency", "agency_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"))
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ID)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    placed_by: Mapped[str] = mapped_column(ID, default="system")
    reason: Mapped[str] = mapped_column(Text, default="")
    queue_item_id: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(ID)
    end_reason: Mapped[str | None] = mapped_column(Text)


class LegalReferral(Base):
    """A loan referred to legal (诉讼 review). status: open → closed. queue: the legal queue the
    strategy named (``legal`` when it named none)."""

    __tablename__ = "legal_referral"
    __table_args__ = (
        UniqueConstraint("queue_item_id"),
        Index("ix_legal_referral_loan", "loan_id", "status"),
        Index("ix_legal_referral_queue", "queue", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"))
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    queue: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="open")
    referred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    referred_by: Mapped[str] = mapped_column(ID, default="system")
    reason: Mapped[str] = mapped_column(Text, default="")
    queue_item_id: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(ID)
    close_reason: Mapped[str | None] = mapped_column(Text)
