"""Quoting a schedule without booking a loan (the `parley schedule quote` use case)."""

from __future__ import annotations

from datetime import date
from typing import Any

from parley.core.dates import DayCount
from parley.core.money import MoneyError, format_minor, parse_minor, parse_rate
from parley.core.schedule import MAX_TERM_MONTHS, LoanTerms, RepaymentMethod, generate_schedule
from parley.errors import InvalidInput


def quote_schedule(*, principal: str, annual_rate: str, terms: int, method: str, first_due: date,
                   day_count: str = "30/360", currency: str = "CNY", disbursed_on: date | None = None) -> dict[str, Any]:
    """The schedule as JSON-ready data: amounts as decimal strings in major units."""
    try:
        principal_minor = parse_minor(principal, currency)
    except MoneyError as exc:
        raise InvalidInput(str(exc), field="principal" if "currency" not in str(exc) else "currency") from None
    if principal_minor <= 0:
        raise InvalidInput("must be positive", field="principal")
    try:
        rate = parse_rate(annual_rate)
    except MoneyError as exc:
        raise InvalidInput(str(exc), field="annual-rate") from None
    if not 1 <= terms <= MAX_TERM_MONTHS:
        raise InvalidInput(f"must be 1..{MAX_TERM_MONTHS}", field="terms")
    try:
        m = RepaymentMethod(method)
    except ValueError:
        raise InvalidInput(f"{method!r} is not one of {', '.join(x.value for x in RepaymentMethod)}", field="method") from None
    try:
        dc = DayCount(day_count)
    except ValueError:
        raise InvalidInput(f"{day_count!r} is not one of {', '.join(x.value for x in DayCount)}", field="day-count") from None
    if disbursed_on is not None and disbursed_on >= first_due:
        raise InvalidInput("must be before the first due date", field="disbursed-on")
    schedule = generate_schedule(LoanTerms(principal_minor, rate, terms, m, dc, first_due, disbursed_on))
    f = lambda v: format_minor(v, currency)  # noqa: E731
    rows = [{"number": s.number, "due_date": s.due_on.isoformat(), "payment": f(s.payment), "principal": f(s.principal),
             "interest": f(s.interest), "balance": f(s.balance)} for s in schedule]
    return {"currency": currency, "principal": f(principal_minor), "annual_rate": annual_rate, "method": m.value,
            "day_count": dc.value, "total_interest": f(sum(s.interest for s in schedule)),
            "total_payment": f(sum(s.payment for s in schedule)), "installments": rows}
