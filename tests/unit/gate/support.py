"""Builders for gate tests: short, explicit facts and requests."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from parley.core.content import ContentHit, ContentScreening
from parley.core.gate import (
    AgreementFact,
    BorrowerFacts,
    CallResult,
    Channel,
    Collector,
    ContactRecord,
    ContactRequest,
    Facts,
    Hold,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
    decide,
)
from parley.services.gate_check import load_pack

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
SH = ZoneInfo("Asia/Shanghai")
LON = ZoneInfo("Europe/London")
KOL = ZoneInfo("Asia/Kolkata")

PHONE = {"US": "+12125550100", "US-MA": "+16175550100", "CN": "+8613800138000",
         "GB": "+447911123456", "IN": "+919812345678"}
ZONES = {"US": ("America/New_York",), "US-MA": ("America/New_York",),
         "CN": ("Asia/Shanghai",), "GB": ("Europe/London",), "IN": ("Asia/Kolkata",)}
TZ = {"US": NY, "US-MA": NY, "CN": SH, "GB": LON, "IN": KOL}


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def call(when: datetime, result: CallResult | None = CallResult.NO_ANSWER, *, to: str = "",
         person: str = "B1", role: Role = Role.BORROWER, debt: str | None = "D1",
         initiated_by: str = "collector", consent_until: datetime | None = None,
         channel: Channel = Channel.CALL, other_debts: tuple[str, ...] = ()) -> ContactRecord:
    return ContactRecord(at=when, channel=channel, person_id=person, role=role,
                         to=to or "+12125550100", debt_id=debt, result=result,
                         initiated_by=initiated_by, consent_until=consent_until,
                         other_debt_ids=other_debts)


def request(when: datetime, pack: str = "US", *, channel: Channel = Channel.CALL,
            purpose: Purpose = Purpose.COLLECTION, debt: str | None = "D1",
            to: str | None = None, text: str | None = None, person: str = "B1",
            role: Role = Role.BORROWER, collectors: tuple[Collector, ...] = ()
            ) -> ContactRequest:
    return ContactRequest(at=when, channel=channel, person_id=person, role=role,
                          to=to or PHONE[pack], purpose=purpose, debt_id=debt, text=text,
                          collectors=collectors)


def facts(pack: str = "US", *, history: tuple[ContactRecord, ...] = (),
          zones: tuple[str, ...] | None = None, holds: tuple[Hold, ...] = (),
          agreements: tuple[AgreementFact, ...] = (), content: ContentScreening | None = None,
          person: PersonFacts | None = None, borrower: BorrowerFacts | None = None,
          **person_kw: object) -> Facts:
    z = ZONES[pack] if zones is None else zones
    p = person or PersonFacts(id="B1", role=Role.BORROWER, candidate_zones=z, holds=holds,
                              **person_kw)  # type: ignore[arg-type]
    b = borrower
    if b is None and p.role is Role.BORROWER:
        b = BorrowerFacts(p.id, (PhoneFact(PHONE[pack]),), z, holds)
    return Facts(person=p, borrower=b, history=tuple(sorted(history, key=lambda r: r.at)),
                 agreements=agreements, content=content)


def clean() -> ContentScreening:
    return ContentScreening("test-1")


def dirty(category: str, term: str = "x") -> ContentScreening:
    return ContentScreening("test-1", (ContentHit(category, term, term),))


def check(pack_id: str, req: ContactRequest, f: Facts):
    return decide(req, f, load_pack(pack_id))


def assert_denied_by(decision, rule_id: str) -> None:
    assert not decision.allowed, decision.rule_ids()
    assert rule_id in decision.rule_ids("deny"), decision.rule_ids("deny")


def assert_allowed(decision) -> None:
    assert decision.allowed, [(f.rule_id, dict(f.params)) for f in decision.denials]


def minute() -> timedelta:
    return timedelta(minutes=1)
