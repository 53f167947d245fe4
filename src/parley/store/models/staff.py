"""People who work cases: staff users (collectors, managers, compliance…) and agencies (委外)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.store.models.base import Base
from parley.store.types import ID, UTCDateTime


class Agency(Base):
    __tablename__ = "agency"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class StaffUser(Base):
    """role: administrator, strategy_manager, team_lead, collector, agency_collector,
    compliance_officer, auditor. Collectors carry a badge number shown to borrowers, the
    languages and skills calls are routed by, and a daily capacity."""

    __tablename__ = "staff_user"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(24))
    agency_id: Mapped[str | None] = mapped_column(ID)
    badge_number: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(200), default="")
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    languages: Mapped[str] = mapped_column(String(100), default="zh-Hans")  # comma-separated
    skills: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    daily_capacity: Mapped[int] = mapped_column(Integer, default=60)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
