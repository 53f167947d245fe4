"""Shared values for the agreement maths tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml

from parley.core.agreements import Components, Debt, Policy, Upcoming, parse_policy
from parley.core.dates import add_months

POLICY_FILE = Path(__file__).resolve().parents[3] / "src" / "parley" / "policies" / "default.yaml"
AS_OF = date(2026, 3, 2)


def policy_doc(**overrides: Any) -> dict[str, Any]:
    doc = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    doc.update(overrides)
    return doc


def default_policy(**overrides: Any) -> Policy:
    return parse_policy(policy_doc(**overrides))


OVERDUE = Components(400_000, 40_000, 0, 20_000)
EACH = Components(90_000, 10_000)


def debt(overdue: Components = OVERDUE, upcoming: int = 3, each: Components = EACH) -> Debt:
    """A CNY debt on AS_OF: 4600.00 overdue (4000 principal, 400 interest, 200 penalty) and
    `upcoming` monthly instalments of 1000.00 still to fall due."""
    ups = tuple(Upcoming(10 + k, add_months(date(2026, 4, 1), k), each) for k in range(upcoming))
    return Debt("L1", "CNY", AS_OF, overdue, ups)
