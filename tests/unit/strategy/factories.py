"""Small builders shared by the strategy tests."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from parley.core.strategy import AccountSnapshot, Strategy, parse_strategy

AS_OF = date(2026, 11, 23)  # a Monday


def account(**overrides: Any) -> AccountSnapshot:
    fields: dict[str, Any] = {
        "account_id": "acc-1",
        "borrower_id": "b-1",
        "loan_id": "l-1",
        "days_past_due": 10,
        "bucket": "M1",
        "balance_minor": 500_000,
        "currency": "CNY",
        "product": "cash_loan",
        "risk_score": 600,
        "broken_promises": 0,
        "tags": frozenset(),
    }
    fields.update(overrides)
    return AccountSnapshot(**fields)


def minimal_doc() -> dict[str, Any]:
    """A valid strategy document covering every dpd from 1 up, as a fresh deep copy."""
    return copy.deepcopy(
        {
            "id": "test",
            "name": "Test",
            "version": 3,
            "currency": "CNY",
            "states": [
                {
                    "name": "late",
                    "condition": {"days_past_due_at_least": 31},
                    "actions": [{"kind": "call", "queue": "late"}],
                },
                {
                    "name": "early",
                    "condition": {"days_past_due_at_least": 1, "days_past_due_at_most": 30},
                    "actions": [{"kind": "sms", "template": "reminder"}],
                },
            ],
        }
    )


def strategy_with_states(*states: dict[str, Any], **top: Any) -> Strategy:
    doc = minimal_doc()
    doc["states"] = list(states)
    doc.setdefault("intended_dpd_gaps", [{"days_past_due_at_least": 0, "reason": "tests"}])
    doc.update(top)
    return parse_strategy(doc, "test.yaml")
