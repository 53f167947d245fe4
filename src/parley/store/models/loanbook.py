"""The loan book: borrowers and how to reach them, loans, schedules, payments, the ledger,
delinquency pauses and the bucket history.

Money columns are BigInteger minor units. Personal identifiers (phone numbers, ID numbers,
address lines) are stored encrypted (`*_enc`, AES-GCM) with an HMAC blind index (`*_index`)
for equality lookups and a masked form for display; time-zone candidates are derived at write
time so the gate never needs to decrypt.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, DecimalText, UTCDateTime


class Borrower(Base):
    __tablename__ = "borrower"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    preferred_language: Mapped[str] = mapped_column(String(16), default="zh-Hans")
    declared_timezone: Mapped[str | None] = mapped_column(String(64))
    jurisdiction: Mapped[str] = mapped_column(String(16))
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    risk_score: Mapped[int | None] = mapped_column(Integer)
    # ',vip,agreement_active,' style, so a set-based LIKE finds a tag without a join.
    tags: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Head of this borrower's tamper-evident audit chain (see services.audit).
    audit_seq: Mapped[int] = mapped_column(Integer, default=0)
    audit_head: Mapped[str] = mapped_column(String(64), default="")


# The partial index of valid phones: a query that wants it says ``p.is_valid`` word for word
# (SQLite uses a partial index only when the query's condition matches its own).
VALID_PHONE_WHERE = "is_valid"


class BorrowerPhone(Base):
    __tablename__ = "borrower_phone"
    __table_args__ = (
        UniqueConstraint("borrower_id", "e164_index"),
        Index("ix_borrower_phone_e164_index", "e164_index"),
        Index("ix_borrower_phone_valid", "borrower_id", sqlite_where=text(VALID_PHONE_WHERE),
              postgresql_where=text(VALID_PHONE_WHERE)),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    phone_type: Mapped[str] = mapped_column(String(16))  # mobile, home, work, other
    e164_enc: Mapped[bytes] = mapped_column(LargeBinary)
    e164_index: Mapped[str] = mapped_column(String(64))
    masked: Mapped[str] = mapped_column(String(32))
    timezones: Mapped[str] = mapped_column(
        String(400), default=""
    )  # candidate IANA zones, comma-separated
    is_valid: Mapped[bool] = mapped_column(Boolean, default=True)


class BorrowerEmail(Base):
    __tablename__ = "borrower_email"
    __table_args__ = (UniqueConstraint("borrower_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))


class BorrowerAddress(Base):
    __tablename__ = "borrower_address"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    country: Mapped[str] = mapped_column(String(2))
    region: Mapped[str] = mapped_column(String(64), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    line_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    postal_code: Mapped[str] = mapped_column(String(20), default="")


class ThirdParty(Base):
    """Someone linked to a borrower who is not the debtor: emergency contact, family, employer."""

    __tablename__ = "third_party"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str] = mapped_column(
        String(32)
    )  # emergency_contact, family, employer, friend, other
    e164_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    e164_index: Mapped[str | None] = mapped_column(String(64))
    masked: Mapped[str] = mapped_column(String(32), default="")
    timezones: Mapped[str] = mapped_column(String(400), default="")


class Loan(Base):
    __tablename__ = "loan"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    principal: Mapped[int] = mapped_column(BigInteger)
    annual_rate: Mapped[str] = mapped_column(DecimalText)  # percent, exact decimal string
    term: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(20))
    day_count: Mapped[str] = mapped_column(String(12))
    disbursed_on: Mapped[date] = mapped_column(Date)
    first_due_on: Mapped[date] = mapped_column(Date)
    product: Mapped[str] = mapped_column(String(50), default="")
    agency_id: Mapped[str | None] = mapped_column(ID, index=True)  # 委外 placement
    schedule_source: Mapped[str] = mapped_column(String(10), default="generated")  # or 'imported'
    status: Mapped[str] = mapped_column(String(12), default="active")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Caches of the instalments (see services.payments.refresh_loan_cache): the oldest due date
    # still unpaid, and the latest date an instalment became paid. For any as-of date on or
    # after last_paid_off_on the first alone gives days past due — one row per loan, not ten.
    oldest_unpaid_due_on: Mapped[date | None] = mapped_column(Date)
    last_paid_off_on: Mapped[date | None] = mapped_column(Date)


class Installment(Base):
    """One scheduled instalment. `*_due` is what was scheduled or charged net of waivers;
    `paid_*` and `paid_off_on` are caches of the ledger (rebuildable from postings)."""

    __tablename__ = "installment"

    # No foreign key to loan on purpose: instalments are written only by the loan import, in the
    # same transaction as their loan (tests check there are no orphans); the per-row FK trigger
    # cost a third of a PostgreSQL import of a million loans.
    loan_id: Mapped[str] = mapped_column(ID, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ID)
    due_on: Mapped[date] = mapped_column(Date)
    principal_due: Mapped[int] = mapped_column(BigInteger)
    interest_due: Mapped[int] = mapped_column(BigInteger)
    fee_due: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    penalty_due: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_principal: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_interest: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_fee: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_penalty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    paid_off_on: Mapped[date | None] = mapped_column(Date)


class Payment(Base):
    """A payment as received. Its id is the lender's idempotency key: posted exactly once."""

    __tablename__ = "payment"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"), index=True)
    borrower_id: Mapped[str] = mapped_column(ID, index=True)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_on: Mapped[date] = mapped_column(Date)  # business date the payment takes effect
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(16), default="import")
    content_hash: Mapped[str] = mapped_column(String(64))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversal_reason: Mapped[str | None] = mapped_column(String(200))


class LedgerEntry(Base):
    """An append-only journal entry; its postings say what it did to each instalment."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"), index=True)
    borrower_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(16))  # payment, reversal, charge, waiver
    effective_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payment.id"), index=True)
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entry.id"))
    memo: Mapped[str] = mapped_column(Text, default="")


class LedgerPosting(Base):
    """One line of an entry. For payments: amount paid to (instalment, component), or to
    'credit' with no instalment. Reversals post the exact negatives. Charges and waivers post
    the amount charged or waived on a fee/penalty/interest/principal component."""

    __tablename__ = "ledger_posting"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entry.id"), index=True)
    loan_id: Mapped[str] = mapped_column(ID, index=True)
    installment_number: Mapped[int | None] = mapped_column(Integer)
    component: Mapped[str] = mapped_column(String(12))
    amount: Mapped[int] = mapped_column(BigInteger)


class DelinquencyPause(Base):
    """Fineract-style pause: days in [start_on, end_on) do not count towards days past due."""

    __tablename__ = "delinquency_pause"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"), index=True)
    borrower_id: Mapped[str] = mapped_column(ID)
    start_on: Mapped[date] = mapped_column(Date)
    end_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")
    agreement_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64), default="system")


class LoanDelinquency(Base):
    """The latest snapshot per loan: what the daily run and the pages read."""

    __tablename__ = "loan_delinquency"

    loan_id: Mapped[str] = mapped_column(ForeignKey("loan.id"), primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ID, index=True)
    as_of: Mapped[date] = mapped_column(Date)
    days_past_due: Mapped[int] = mapped_column(Integer)
    bucket: Mapped[str] = mapped_column(String(8))
    bucket_since: Mapped[date] = mapped_column(Date)


class BucketChange(Base):
    """History of bucket changes, one row per change (not per day), from the daily snapshot."""

    __tablename__ = "bucket_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loan_id: Mapped[str] = mapped_column(ID, index=True)
    borrower_id: Mapped[str] = mapped_column(ID)
    changed_on: Mapped[date] = mapped_column(Date)
    from_bucket: Mapped[str | None] = mapped_column(String(8))
    to_bucket: Mapped[str] = mapped_column(String(8))
    days_past_due: Mapped[int] = mapped_column(Integer)


class CalendarDay(Base):
    """A versioned business calendar: one row per jurisdiction and date that is NOT an ordinary
    weekday, or is a make-up working day (调休). A year without a `calendar_year` row fails closed."""

    __tablename__ = "calendar_day"

    jurisdiction: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_working_day: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(200), default="")


class CalendarYear(Base):
    __tablename__ = "calendar_year"

    jurisdiction: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
