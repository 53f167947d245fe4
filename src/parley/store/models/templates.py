"""Outbound work owned by the daily run and the worker: message templates, 面谈 / field-visit
appointments and their collectors, and the per-borrower experiment bucket of the
champion/challenger split (SQL has no portable SHA-256, so it is computed once and stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class Template(Base):
    """One version of a message template in one locale (zh-Hans, zh-Hant, en).

    A template id names the message (``m1_reminder``); each (id, locale) has versions 1, 2, …
    and the highest is current. ``lexicon_version`` is the screening lexicon that passed the
    body when it was saved (a template that fails screening is never stored).
    """

    __tablename__ = "template"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # sms, email, notice
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300), default="")  # e-mail only; may be empty
    body: Mapped[str] = mapped_column(Text)
    lexicon_version: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(ID, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Appointment(Base):
    """A 面谈 (interview by phone, video or in person) or a 走访 field visit.

    kind: interview_phone | interview_video | interview_in_person | field_visit.
    status: scheduled → notified → checked_in → completed; or cancelled / no_show.
    place: the address or meeting link shown to the borrower; empty for phone interviews.
    notice_sent_at: when the borrower was sent the collectors' names and badge numbers.
    check_in_at / check_out_at: when the visit or interview started and ended (NULL = not yet).
    report: the collector's visit report, written at check-out; empty until then.
    """

    __tablename__ = "appointment"
    __table_args__ = (Index("ix_appointment_borrower_status", "borrower_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(ForeignKey("borrower.id"))
    loan_id: Mapped[str | None] = mapped_column(ID)
    queue_item_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    place: Mapped[str] = mapped_column(String(500), default="")
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(12), default="scheduled")
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_attempt_id: Mapped[int | None] = mapped_column(Integer)
    check_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt_id: Mapped[int | None] = mapped_column(Integer)  # the contact attempt of the visit
    report: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(ID, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AppointmentCollector(Base):
    """A collector assigned to an appointment; ``lead`` marks the one responsible."""

    __tablename__ = "appointment_collector"

    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id"), primary_key=True)
    collector_id: Mapped[str] = mapped_column(ForeignKey("staff_user.id"), primary_key=True)
    lead: Mapped[bool] = mapped_column(default=False)


class BorrowerArm(Base):
    """``experiment_bucket(seed, borrower_id)`` in [0, 10000), stored once per experiment
    seed and borrower so the daily run can split arms in SQL (``arm_case``)."""

    __tablename__ = "borrower_arm"

    seed: Mapped[str] = mapped_column(String(100), primary_key=True)
    borrower_id: Mapped[str] = mapped_column(ID, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer)
