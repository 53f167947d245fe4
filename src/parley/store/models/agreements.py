"""Agreements (协商): promises to pay, instalment plans, extensions, reductions. The gate reads
`status`/`starts_on`/`ends_on`; the agreements service owns the rest of the lifecycle."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class Agreement(Base):
    __tablename__ = "agreement"
    __table_args__ = (Index("ix_agreement_borrower_status", "borrower_id", "status"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"))
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # promise, installment_plan, extension, reduction
    # proposed → approved → accepted → active → kept | broken | cancelled; also expired, superseded
    status: Mapped[str] = mapped_column(String(12))
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    waived_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    terms: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON of the quoted plan
    policy_id: Mapped[str] = mapped_column(String(64), default="default")
    proposed_by: Mapped[str] = mapped_column(ID)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(ID)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by: Mapped[str | None] = mapped_column(ID)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acceptance_channel: Mapped[str | None] = mapped_column(String(16))  # portal, otp, call
    recording_ref: Mapped[str | None] = mapped_column(String(200))
    supersedes_id: Mapped[str | None] = mapped_column(ID)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(200))
    verification_code: Mapped[str | None] = mapped_column(String(200))
    # What was quoted: the option key (e.g. installment_plan/arrears), its scope and frequency,
    # and whether the policy needs a supervisor's approval before the borrower may accept.
    plan_key: Mapped[str] = mapped_column(String(64), default="")
    scope: Mapped[str] = mapped_column(String(16), default="arrears")
    frequency: Mapped[str] = mapped_column(String(12), default="monthly")
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_days: Mapped[int] = mapped_column(Integer, default=3)
    # One-time acceptance code sent to the borrower: only an HMAC of it is kept.
    otp_hash: Mapped[str | None] = mapped_column(String(64))
    otp_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    otp_attempts: Mapped[int] = mapped_column(Integer, default=0)
    ended_by: Mapped[str | None] = mapped_column(ID)


class AgreementInstallment(Base):
    """One instalment of an agreement. paid_amount/paid_off_on are derived from the loan's
    payments since the proposal (`services.agreements.apply_payments_to_agreements`)."""

    __tablename__ = "agreement_installment"

    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreement.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    due_on: Mapped[date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_off_on: Mapped[date | None] = mapped_column(Date)
