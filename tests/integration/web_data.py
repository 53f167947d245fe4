"""A small world for the web and API tests: two agencies' loans, staff of every kind, API keys.

Loaded through the services (imports, auth), not by writing tables, so the tests see what a
real deployment would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from parley.services import auth
from parley.services.context import Context
from parley.services.imports import import_file
from parley.store.models.queue import ContactQueueItem
from tests.integration.loanbook_data import write_csv

PHONE_B1 = "+8613800138000"
PHONE_B2 = "+8613900139001"
PASSWORD = "correct horse battery"

BORROWERS = [
    {"borrower_id": "B1", "name": "王伟", "phone": PHONE_B1, "language": "zh-Hans",
     "address_country": "CN"},
    {"borrower_id": "B2", "name": "李娜", "phone": PHONE_B2, "language": "zh-Hans",
     "address_country": "CN"},
]
# Overdue at START (2026-03-02): first instalments due from 2025-11-01.
LOANS = [
    {"loan_id": "L1", "borrower_id": "B1", "currency": "CNY", "principal": "12000.00",
     "annual_rate": "18", "term": "12", "method": "equal-installment",
     "disbursed_on": "2025-10-01", "first_due_on": "2025-11-01", "agency_id": "A1"},
    {"loan_id": "L2", "borrower_id": "B2", "currency": "CNY", "principal": "6000.00",
     "annual_rate": "24", "term": "6", "method": "equal-principal",
     "disbursed_on": "2025-10-01", "first_due_on": "2025-11-01", "agency_id": "A2"},
]


@dataclass
class World:
    ctx: Context
    staff: dict[str, str] = field(default_factory=dict)  # username -> id
    totp: dict[str, str] = field(default_factory=dict)  # username -> secret
    keys: dict[str, str] = field(default_factory=dict)  # name -> API key
    codes: list[tuple[str, str]] = field(default_factory=list)  # OTPs sent (e164, code)

    def send(self, e164: str, code: str) -> None:
        self.codes.append((e164, code))


def fast_passwords(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Argon2 with the smallest cost for tests (production keeps argon2-cffi's RFC 9106 profile;
    the hash format is the same, only the work factor differs)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def build_world(ctx: Context, tmp_path: Path) -> World:
    import_file(ctx, "borrowers", write_csv(tmp_path / "borrowers.csv", BORROWERS))
    import_file(ctx, "loans", write_csv(tmp_path / "loans.csv", LOANS))
    w = World(ctx)
    for username, role, agency, badge in (
        ("collector", "collector", None, "C-1001"),
        ("collector2", "collector", None, "C-1002"),
        ("agent", "agency_collector", "A1", "A1-007"),
        ("compliance", "compliance_officer", None, None),
        ("admin", "administrator", None, None),
        ("auditor", "auditor", None, None),
    ):
        sid, secret = auth.create_staff(
            ctx, username=username, password=PASSWORD, role=role, display_name=username.title(),
            agency_id=agency, badge_number=badge, staff_id=f"u-{username}",
        )
        w.staff[username] = sid
        if secret:
            w.totp[username] = secret
    for name, role, agency in (("lender", "administrator", None), ("agency-a1", "agency_collector", "A1"),
                               ("collector-key", "collector", None)):
        w.keys[name] = auth.create_api_key(ctx, name, role=role, agency_id=agency)[1]
    return w


def queue_item(ctx: Context, loan_id: str, borrower_id: str, collector_id: str, priority: int,
               key: str) -> None:
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        conn.execute(insert(ContactQueueItem).values(
            business_date=date(2026, 3, 2), borrower_id=borrower_id, loan_id=loan_id,
            action_kind="call", channel="call", priority=priority, not_before=now,
            status="pending", collector_id=collector_id, idempotency_key=key,
            created_at=now, updated_at=now))


def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def pre_csrf(c: TestClient, path: str = "/signin") -> str:
    """Load a sign-in form and return its double-submit token."""
    r = c.get(path)
    assert r.status_code == 200
    return c.cookies.get("parley_pre")  # type: ignore[return-value]


def sign_in_staff(c: TestClient, w: World, username: str) -> str:
    """Sign a staff member in (with TOTP when the role needs it); returns the session CSRF token."""
    import pyotp

    token = pre_csrf(c)
    r = c.post("/signin", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303, r.text
    if r.headers["location"] == "/signin/totp":
        page = c.get("/signin/totp")
        csrf = _csrf_from(page.text)
        code = pyotp.TOTP(w.totp[username]).at(w.ctx.clock.now())
        r = c.post("/signin/totp", data={"code": code, "csrf_token": csrf})
        assert r.status_code == 303, r.text
    return session_csrf(c)


def session_csrf(c: TestClient) -> str:
    page = c.get("/", follow_redirects=True)
    return _csrf_from(page.text)


def _csrf_from(html: str) -> str:
    import re

    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def sign_in_borrower(c: TestClient, w: World, phone: str = PHONE_B1) -> str:
    token = pre_csrf(c, "/portal/signin")
    r = c.post("/portal/signin/code", data={"phone": phone, "csrf_token": token})
    assert r.status_code == 200, r.text
    e164, code = w.codes[-1]
    r = c.post("/portal/signin/verify", data={"phone": phone, "code": code, "csrf_token": token})
    assert r.status_code == 303, r.text
    return session_csrf(c)


START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
