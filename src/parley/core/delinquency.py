"""Days past due, buckets and delinquency pauses.

Days past due as of date D count the days after the oldest instalment that was unpaid at the
end of D fell due, minus the days covered by delinquency pauses (Fineract's sense: intervals
of at least one day, never overlapping, possibly backdated). Within the grace period a loan is
not delinquent at all (0 days); once past it, days count from the due date itself, as credit
bureaus count them. The set-based query in `parley.services.delinquency` implements exactly
these definitions; a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True, slots=True)
class Pause:
    """Days in [start_on, end_on) do not count towards days past due. At least one day long."""

    start_on: date
    end_on: date

    def __post_init__(self) -> None:
        if self.end_on <= self.start_on:
            raise ValueError("a pause lasts at least one day (end_on after start_on)")

    def overlaps(self, other: Pause) -> bool:
        return self.start_on < other.end_on and other.start_on < self.end_on


def check_pauses(pauses: Iterable[Pause]) -> None:
    """Raise ValueError if any two pauses overlap."""
    ordered = sorted(pauses, key=lambda p: p.start_on)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.overlaps(b):
            raise ValueError(f"pause {b.start_on}–{b.end_on} overlaps {a.start_on}–{a.end_on}")


def paused_days(since: date, as_of: date, pauses: Iterable[Pause]) -> int:
    """Days d with since < d ≤ as_of that fall inside a pause."""
    lo, hi = since + timedelta(days=1), as_of + timedelta(days=1)
    total = 0
    for p in pauses:
        total += max(0, (min(hi, p.end_on) - max(lo, p.start_on)).days)
    return total


def days_past_due(
    oldest_unpaid_due_on: date | None,
    as_of: date,
    pauses: Sequence[Pause] = (),
    grace_days: int = 0,
) -> int:
    """Days past due as of `as_of` given the due date of the oldest instalment still unpaid."""
    if oldest_unpaid_due_on is None or oldest_unpaid_due_on >= as_of:
        return 0
    days = (as_of - oldest_unpaid_due_on).days - paused_days(oldest_unpaid_due_on, as_of, pauses)
    return days if days > grace_days else 0


@dataclass(frozen=True, slots=True)
class Bucket:
    """A named range of days past due, both ends inclusive; `max_days` None means open-ended."""

    name: str
    min_days: int
    max_days: int | None


@dataclass(frozen=True, slots=True)
class BucketScheme:
    """Contiguous, non-overlapping buckets starting at 0, the last one open-ended."""

    buckets: tuple[Bucket, ...]

    def __post_init__(self) -> None:
        expected = 0
        for i, b in enumerate(self.buckets):
            if b.min_days != expected:
                raise ValueError(f"bucket {b.name} must start at {expected} days")
            last = i == len(self.buckets) - 1
            if (b.max_days is None) != last:
                raise ValueError("only the last bucket is open-ended, and it must be")
            if b.max_days is not None:
                if b.max_days < b.min_days:
                    raise ValueError(f"bucket {b.name} ends before it starts")
                expected = b.max_days + 1
        if not self.buckets:
            raise ValueError("a bucket scheme needs at least one bucket")

    @classmethod
    def parse(cls, text: str) -> BucketScheme:
        """'M0:0,M1:1-30,M2:31-60,M3+:61-' (name:min-max, the last open-ended)."""
        out = []
        for part in text.split(","):
            name, _, rng = part.strip().partition(":")
            lo, _, hi = rng.partition("-")
            out.append(
                Bucket(
                    name.strip(),
                    int(lo),
                    int(hi) if hi.strip() else (int(lo) if "-" not in rng else None),
                )
            )
        return cls(tuple(out))

    def bucket_for(self, dpd: int) -> str:
        for b in self.buckets:
            if b.max_days is None or dpd <= b.max_days:
                return b.name
        raise ValueError("unreachable: the last bucket is open-ended")


def default_buckets() -> BucketScheme:
    """M0 = current; M1 = 1–30; M2 = 31–60; … M5 = 121–150; M6+ = 151 and beyond."""
    buckets = [Bucket("M0", 0, 0)]
    for m in range(1, 6):
        buckets.append(Bucket(f"M{m}", 30 * (m - 1) + 1, 30 * m))
    buckets.append(Bucket("M6+", 151, None))
    return BucketScheme(tuple(buckets))
