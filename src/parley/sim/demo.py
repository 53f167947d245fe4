"""Demo set-up after a simulation: staff accounts for every role, an agency with some cases
placed with it, and a borrower worth signing in as. Uses `parley.services.auth.create_staff`
(it hashes passwords with argon2 and enrols TOTP where the role needs it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

DEMO_AGENCY = ("agency-demo", "示范委外催收公司 Demo Agency")
DEMO_ROLES: tuple[tuple[str, str, str], ...] = (
    # (username, role, display name)
    ("admin", "administrator", "管理员 Admin"),
    ("manager", "strategy_manager", "策略经理 Strategy Manager"),
    ("lead", "team_lead", "组长 Team Lead"),
    ("collector", "collector", "催收员 王敏 Collector"),
    ("agency", "agency_collector", "委外催收员 Agency Collector"),
    ("compliance", "compliance_officer", "合规官 Compliance Officer"),
    ("auditor", "auditor", "审计 Auditor"),
)


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: str
    password: str
    totp_secret: str | None


class ShiftedClock:
    """Wall time moved to the simulation's end, so the served app's "today" is the day after
    the simulated period (the simulation itself never reads this clock)."""

    def __init__(self, at: datetime) -> None:
        self._offset = at - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def create_accounts(ctx: Any) -> list[DemoAccount]:
    """Staff accounts for each role."""
    from parley.services.auth import create_staff

    with ctx.db.transaction() as conn:
        # Demo data, written directly: the agency row and a tenth of the cases placed with it
        # (loan.agency_id set in one statement, not through parley.services.placements, which
        # records a placement per loan and refuses loans under an agreement or a hold).
        conn.execute(text("INSERT INTO agency (id, name, active) VALUES (:id, :name, :a)"),
                     {"id": DEMO_AGENCY[0], "name": DEMO_AGENCY[1], "a": True})
        conn.execute(text("UPDATE loan SET agency_id = :a WHERE substr(id, length(id), 1) = '7'"),
                     {"a": DEMO_AGENCY[0]})
    out = []
    for k, (username, role, name) in enumerate(DEMO_ROLES, start=1):
        password = f"demo-{username}-2026"
        _sid, secret = create_staff(
            ctx, username=username, password=password, role=role, display_name=name,
            agency_id=DEMO_AGENCY[0] if role == "agency_collector" else None,
            badge_number=f"D{k:04d}" if "collector" in role or role == "team_lead" else None,
            staff_id=f"demo-{username}", languages="zh-Hans,en")
        out.append(DemoAccount(username, role, password, secret))
    return out


def demo_borrower(portfolio_borrowers: Any) -> tuple[str, str, str] | None:
    """(borrower id, name, phone) of a borrower in China with a valid number whose case has
    something to show: the first keeper in the book."""
    for b in portfolio_borrowers:
        if b.where == "cn" and b.profile.kind.value == "keeper" and b.phones[0].valid:
            return b.id, b.name, b.phones[0].number
    return None

