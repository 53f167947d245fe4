"""Benchmark: pure gate decisions per second with 90 days of history per person.

Each person has ~3 contacts a day for 90 days (calls with mixed outcomes, some texts); the
requests are spread over the day so some are denied (hours, caps) and need next_allowed_at.
Facts are built once per person (as the shell does per transaction); only decide() is timed.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from parley.core.gate import (
    BorrowerFacts,
    CallResult,
    Channel,
    ContactRecord,
    ContactRequest,
    Facts,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
    decide,
)
from parley.services.gate_check import load_pack

CASES = (("US", "America/New_York", "+12125550100"), ("CN", "Asia/Shanghai", "+8613800138000"),
         ("US-MA", "America/New_York", "+16175550100"))
RESULTS = (CallResult.NO_ANSWER, CallResult.NO_ANSWER, CallResult.VOICEMAIL,
           CallResult.NOT_CONNECTED, CallResult.CONVERSATION)


def _person(rng: random.Random, zone_name: str, phone: str, start: datetime):
    z = ZoneInfo(zone_name)
    hist = []
    for day in range(90):
        base = (start + timedelta(days=day)).astimezone(z).replace(hour=9, minute=0)
        for k in range(3):
            when = base + timedelta(hours=3 * k, minutes=rng.randrange(60))
            channel = Channel.SMS if rng.random() < 0.2 else Channel.CALL
            result = rng.choice(RESULTS) if channel is Channel.CALL else None
            hist.append(ContactRecord(when, channel, "B1", Role.BORROWER, phone,
                                      rng.choice(("D1", "D2")), result))
    hist.sort(key=lambda r: r.at)
    person = PersonFacts("B1", Role.BORROWER, (zone_name,))
    return Facts(person, BorrowerFacts("B1", (PhoneFact(phone),), (zone_name,)), tuple(hist))


def run(quick: bool = False) -> dict[str, float]:
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))
    end = start + timedelta(days=90)
    work = []
    for pack_id, zone_name, phone in CASES:
        pack = load_pack(pack_id)
        for _ in range(5):
            facts = _person(rng, zone_name, phone, start)
            for _ in range(40):
                at = end + timedelta(minutes=rng.randrange(0, 24 * 60))
                ch = Channel.CALL if rng.random() < 0.8 else Channel.SMS
                req = ContactRequest(at, ch, "B1", Role.BORROWER, phone, Purpose.COLLECTION,
                                     rng.choice(("D1", "D2")))
                work.append((req, facts, pack))
    rounds = 2 if quick else 10
    for req, facts, pack in work[:200]:  # warm caches
        decide(req, facts, pack)
    n = 0
    allowed = 0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for req, facts, pack in work:
            allowed += decide(req, facts, pack).allowed
            n += 1
    elapsed = time.perf_counter() - t0
    return {"gate_decisions_per_s": n / elapsed, "gate_allowed_share": allowed / n}


if __name__ == "__main__":
    print(run())
