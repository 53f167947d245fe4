"""The simulated borrower: a seeded, pure model of how people respond to their debt and to
being contacted.

Every draw is a function of ``(seed, borrower, day, event, counter)`` hashed to a number in
[0, 1): no shared random stream, so the same borrower answers the same 3rd call of a day the
same way in the Parley run and in the naive run, whatever else happened in between. Nothing
here reads a clock or a database.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Behaviour profiles, in the proportions of ``PROFILE_WEIGHTS``."""

    ON_TIME = "on_time"  # pays every instalment on its due date
    LATE = "late"  # pays every instalment, a few days late, on their own
    PARTIAL = "partial"  # pays part of each instalment; the rest needs a conversation
    KEEPER = "keeper"  # stops paying; negotiates a plan and keeps it
    BREAKER = "breaker"  # stops paying; negotiates a plan and breaks it
    DISPUTER = "disputer"  # stops paying; disputes the debt when reached
    CEASER = "ceaser"  # stops paying; asks not to be contacted when reached
    HARDSHIP = "hardship"  # stops paying; mostly cannot, sometimes tries a plan
    UNREACHABLE = "unreachable"  # every number on file is wrong; only third parties answer


PROFILE_WEIGHTS: tuple[tuple[Kind, int], ...] = (
    (Kind.ON_TIME, 52),
    (Kind.LATE, 12),
    (Kind.PARTIAL, 6),
    (Kind.KEEPER, 9),
    (Kind.BREAKER, 6),
    (Kind.DISPUTER, 3),
    (Kind.CEASER, 3),
    (Kind.HARDSHIP, 6),
    (Kind.UNREACHABLE, 3),
)

STOPPERS = frozenset({Kind.KEEPER, Kind.BREAKER, Kind.DISPUTER, Kind.CEASER, Kind.HARDSHIP,
                      Kind.UNREACHABLE})


class Outcome(StrEnum):
    """What a conversation with the borrower leads to."""

    PAY_FULL = "pay_full"  # pays what is overdue, now
    PAY_PART = "pay_part"  # pays part of what is overdue, now
    PROMISE = "promise"  # promise to pay the overdue amount by a date (one instalment)
    PLAN = "plan"  # instalment plan (分期) over the overdue amount
    DISPUTE = "dispute"  # disputes the debt: a dispute hold
    CEASE = "cease"  # asks not to be contacted again: a cease hold
    REFUSE = "refuse"  # refuses to talk about it
    NOTHING = "nothing"  # talks, commits to nothing


@dataclass(frozen=True, slots=True)
class Profile:
    """How one borrower behaves; drawn once per borrower from the portfolio seed.

    kind: the profile. late_days: for LATE, days after the due date they pay (0 otherwise).
    partial_share_pct: for PARTIAL, percent of an instalment paid on their own (100 otherwise).
    miss_from: the first instalment number they stop paying on their own (0 = never stop).
    answer_rate_pct: how often they pick up at a good hour. temper_pct: how readily a bad
    contact turns into a complaint (100 = average).
    """

    kind: Kind
    late_days: int = 0
    partial_share_pct: int = 100
    miss_from: int = 0
    answer_rate_pct: int = 60
    temper_pct: int = 100

    def pays_on_own(self, number: int) -> bool:
        """Whether instalment ``number`` is paid without anyone asking (before any plan)."""
        return self.miss_from == 0 or number < self.miss_from


class Dice:
    """Stable uniform draws keyed by strings: ``dice.u("answer", bid, day, n)`` ∈ [0, 1)."""

    __slots__ = ("_salt",)

    def __init__(self, seed: int) -> None:
        self._salt = f"parley-sim/{seed}/".encode()

    def u(self, *key: object) -> float:
        h = hashlib.blake2b(self._salt + "|".join(map(str, key)).encode(), digest_size=8)
        return float(struct.unpack(">Q", h.digest())[0] >> 11) / float(1 << 53)

    def below(self, pct: float, *key: object) -> bool:
        """True with probability pct/100."""
        return self.u(*key) * 100.0 < pct

    def pick(self, weights: tuple[tuple[object, int], ...], *key: object) -> object:
        total = sum(w for _, w in weights)
        x = self.u(*key) * total
        for item, w in weights:
            if x < w:
                return item
            x -= w
        return weights[-1][0]

    def randint(self, lo: int, hi: int, *key: object) -> int:
        """An integer in [lo, hi]."""
        return lo + int(self.u(*key) * (hi - lo + 1))


def draw_profile(dice: Dice, borrower_id: str, term: int) -> Profile:
    kind = Kind(str(dice.pick(PROFILE_WEIGHTS, "profile", borrower_id)))
    answer = dice.randint(35, 90, "answer_rate", borrower_id)
    temper = dice.randint(40, 220, "temper", borrower_id)
    late = dice.randint(2, 18, "late_days", borrower_id) if kind is Kind.LATE else 0
    share = dice.randint(30, 70, "share", borrower_id) if kind is Kind.PARTIAL else 100
    miss = dice.randint(1, min(3, term), "miss_from", borrower_id) if kind in STOPPERS else 0
    if kind is Kind.UNREACHABLE:
        answer = 0
    return Profile(kind, late, share, miss, answer, temper)


# --- answering the phone -------------------------------------------------------------------

# Percent chance of picking up by local hour, before the borrower's own rate: low at night
# (asleep, or wary of a night call), best in the evening.
_HOUR_PICKUP = (8, 5, 5, 5, 5, 5, 8, 20, 40, 50, 55, 55, 45, 45, 55, 55, 55, 55, 60, 65, 65, 55,
                35, 15)


def answers(dice: Dice, p: Profile, borrower_id: str, day: int, local_hour: int,
            calls_today: int, number: str, n: int) -> bool:
    """Whether the borrower picks up the n-th call of the day (they tire after a few)."""
    pct = p.answer_rate_pct * _HOUR_PICKUP[local_hour] / 100.0
    for _ in range(max(0, calls_today - 2)):
        pct *= 0.7
    return dice.below(pct, "answer", borrower_id, day, number, n)


def third_party_answers(dice: Dice, borrower_id: str, tp: int, day: int, local_hour: int,
                        n: int) -> bool:
    pct = 70.0 * _HOUR_PICKUP[local_hour] / 60.0
    return dice.below(pct, "tp_answer", borrower_id, tp, day, n)


def third_party_refuses(dice: Dice, borrower_id: str, tp: int, day: int, n: int,
                        told_debt: bool) -> bool:
    """A contact told about someone else's debt refuses further calls far more often."""
    return dice.below(55.0 if told_debt else 20.0, "tp_refuse", borrower_id, tp, day, n)


# --- conversations -------------------------------------------------------------------------

_OUTCOMES: dict[Kind, tuple[tuple[object, int], ...]] = {
    Kind.ON_TIME: ((Outcome.PAY_FULL, 70), (Outcome.PROMISE, 30)),
    Kind.LATE: ((Outcome.PAY_FULL, 40), (Outcome.PROMISE, 40), (Outcome.NOTHING, 20)),
    Kind.PARTIAL: ((Outcome.PAY_PART, 45), (Outcome.PLAN, 30), (Outcome.NOTHING, 25)),
    Kind.KEEPER: ((Outcome.PLAN, 60), (Outcome.PROMISE, 20), (Outcome.NOTHING, 20)),
    Kind.BREAKER: ((Outcome.PLAN, 55), (Outcome.PROMISE, 20), (Outcome.NOTHING, 25)),
    Kind.DISPUTER: ((Outcome.DISPUTE, 75), (Outcome.REFUSE, 25)),
    Kind.CEASER: ((Outcome.CEASE, 70), (Outcome.REFUSE, 30)),
    Kind.HARDSHIP: ((Outcome.REFUSE, 35), (Outcome.NOTHING, 35), (Outcome.PLAN, 20),
                    (Outcome.PAY_PART, 10)),
    Kind.UNREACHABLE: ((Outcome.NOTHING, 100),),
}


def conversation(dice: Dice, p: Profile, borrower_id: str, day: int, n: int) -> Outcome:
    """The outcome of the borrower's n-th conversation of the day."""
    return Outcome(str(dice.pick(_OUTCOMES[p.kind], "talk", borrower_id, day, n)))


def keeps_instalment(dice: Dice, p: Profile, borrower_id: str, agreement_no: int,
                     number: int) -> bool:
    """Whether the borrower pays plan instalment ``number`` (1-based) of their n-th plan."""
    if p.kind is Kind.BREAKER or p.kind is Kind.HARDSHIP:
        return number == 1 and dice.below(60, "keep", borrower_id, agreement_no, number)
    if p.kind is Kind.PARTIAL:
        return dice.below(80, "keep", borrower_id, agreement_no, number)
    return dice.below(97, "keep", borrower_id, agreement_no, number)


def promise_days(dice: Dice, p: Profile, borrower_id: str, day: int) -> int:
    return max(1, min(10, p.late_days or dice.randint(2, 7, "promise_days", borrower_id, day)))


# --- complaints ----------------------------------------------------------------------------

# Percent chance that one contact of each kind of wrong makes an average-tempered borrower
# complain (投诉). A lawful contact almost never does.
COMPLAINT_PCT: dict[str, float] = {
    "lawful": 0.05,
    "contacts_outside_hours": 6.0,
    "contacts_after_agreement": 20.0,
    "contacts_when_nothing_overdue": 10.0,  # "I paid this morning and they still chase me"
    "cap_breaches": 3.0,
    "third_party_disclosures": 15.0,
    "contacts_under_hold": 25.0,
    "other": 5.0,
}


def complains(dice: Dice, p: Profile, borrower_id: str, day: int, n: int,
              wrongs: tuple[str, ...]) -> bool:
    """Whether the n-th contact of the day (with these wrongs, from the judge) draws a complaint."""
    keys = wrongs or ("lawful",)
    pct = max(COMPLAINT_PCT.get(k, COMPLAINT_PCT["other"]) for k in keys)
    return dice.below(pct * p.temper_pct / 100.0, "complain", borrower_id, day, n)


# --- what bad contacts do to people --------------------------------------------------------


def sours_on_plan(dice: Dice, p: Profile, borrower_id: str, day: int, n: int) -> bool:
    """Called again after agreeing a plan: some conclude the plan means nothing and stop
    paying it ("we agreed and they still call")."""
    return dice.below(20.0 * p.temper_pct / 100.0, "sour", borrower_id, day, n)


def hostile_refuses(dice: Dice, borrower_id: str, day: int, n: int) -> bool:
    """A borrower whose family or employer was told about the debt refuses to talk half the time."""
    return dice.below(50.0, "hostile", borrower_id, day, n)
