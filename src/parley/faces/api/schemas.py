"""API input and output models (separate per entity; table classes never double as schemas).

Money crosses the API as a decimal string in major units ("1234.56"): never a JSON number, so
no client's float can round it. The pattern is in the OpenAPI document, so generated clients
and fuzzers know the shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from parley.core.text import ID_PATTERN, first_not_text, not_text_message

MONEY_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,4})?$"

Money = Annotated[
    str,
    Field(pattern=MONEY_PATTERN, min_length=1, max_length=20, examples=["1234.56"],
          description="a decimal amount in major units, as a string"),
]
Id = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
# The same rule for an id in the URL path.
PathId = Annotated[str, Path(pattern=ID_PATTERN, min_length=1, max_length=64)]


class ErrorBody(BaseModel):
    message: str
    field: str = ""
    record: str = ""


class ErrorOut(BaseModel):
    """Every error: what is wrong, which field, which record (e.g. 'loans.csv row 17')."""

    error: ErrorBody
    errors: list[ErrorBody] = []


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (401, "not signed in / no valid API key"),
        (403, "not allowed (role or CSRF)"),
        (404, "not found (or not visible to you: same answer)"),
        (409, "conflicts with the current state"),
        (422, "invalid input; names the field"),
        (429, "rate limited"),
    )
}


def _refuse_not_text(value: Any) -> None:
    if isinstance(value, str):
        found = first_not_text(value)
        if found:
            # the message is given whole, so a brace in it must not read as a placeholder
            raise PydanticCustomError("control_character", "{message}",
                                      {"message": not_text_message(found)})
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _refuse_not_text(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_not_text(k)
            _refuse_not_text(v)


class Strict(BaseModel):
    """Every API input model: unknown fields are refused, and so is any string (in any field,
    however nested in lists) holding a control character or a lone surrogate: 422 naming the
    field, before a service sees it."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        _refuse_not_text(value)
        return value


class PaymentIn(Strict):
    payment_id: Id = Field(description="the lender's idempotency key: posted exactly once")
    loan_id: Id
    paid_at: datetime = Field(description="with a UTC offset")
    amount: Money


class AllocationLine(BaseModel):
    installment: int
    component: str
    amount: Money


class PaymentOut(BaseModel):
    payment_id: str
    loan_id: str
    amount: Money
    paid_on: str
    already_posted: bool
    allocation: list[AllocationLine]
    credit: Money


class ImportOut(BaseModel):
    kind: str
    file: str
    rows: int
    inserted: int
    unchanged: int
    installments: int


class Overdue(BaseModel):
    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    total: Money


class InstallmentOut(BaseModel):
    number: int
    due_on: str
    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    due: Money
    paid: Money
    paid_off_on: str | None


class PlacementOut(BaseModel):
    """One agency placement (委外) of the loan. ended_*: null while the placement is active;
    placed_by/ended_by: a staff id, 'api:<key id>' or 'system' (the daily strategy)."""

    id: int
    agency_id: str
    placed_at: datetime
    placed_by: str
    reason: str
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None
    active: bool


class LegalReferralOut(BaseModel):
    """One legal referral of the loan. status: open | closed; closed_*: null while open."""

    id: int
    queue: str
    status: str
    referred_at: datetime
    referred_by: str
    reason: str
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


class RecalledOut(BaseModel):
    """A recall: the agency the loan was with, the placement it ended (null when the placement
    came with the loan import and has no history row), and when."""

    loan_id: str
    agency_id: str
    placement: PlacementOut | None
    ended_at: datetime


class InboundOut(BaseModel):
    """A contact the borrower started, on the record. from_masked: the number or address they
    used, masked ("" when not known)."""

    status: str = "ok"
    attempt_id: int
    from_masked: str


class LoanOut(BaseModel):
    id: str
    borrower_id: str
    currency: str
    principal: Money
    annual_rate: str = Field(description="percent per year, exact decimal string")
    term: int
    method: str
    disbursed_on: str
    first_due_on: str
    status: str
    product: str
    agency_id: str | None
    as_of: str
    overdue: Overdue
    overdue_since: str | None
    days_past_due: int
    bucket: str | None
    outstanding_principal: Money
    paid_total: Money
    credit: Money
    schedule: list[InstallmentOut]
    placements: list[PlacementOut] = Field(
        default=[], description="agency placements, newest first (an agency key sees only its own)")
    legal_referrals: list[LegalReferralOut] = Field(default=[], description="newest first")


Category = Literal[
    "harassment", "contact_after_agreement", "third_party_contact", "unidentified_caller",
    "wrong_amount", "identity", "other",
]


class ComplaintIn(Strict):
    borrower_id: Id
    category: Category
    description: str = Field(default="", max_length=4000)
    loan_id: Id | None = None
    contact_ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(default=[], max_length=500)


class AssignIn(Strict):
    staff_id: Id


class ResolveIn(Strict):
    outcome: str = Field(min_length=1, max_length=4000)
    upheld: bool = True


class ComplaintOut(BaseModel):
    id: str
    borrower_id: str
    borrower_name: str
    loan_id: str | None
    category: str
    channel: str
    description: str
    status: str
    filed_at: str
    acknowledge_due_at: str
    resolve_due_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    assigned_to: str | None
    assignee_name: str | None
    outcome: str
    hold_id: int | None
    evidence_count: int
    acknowledge_overdue: bool
    resolve_overdue: bool


class EvidenceContact(BaseModel):
    id: int
    at: str
    channel: str
    to_masked: str
    collector_id: str | None
    collector_name: str | None
    badge: str | None
    agency_id: str | None
    content: str
    result: str | None
    recording_ref: str | None


class EvidenceOut(BaseModel):
    id: int
    note: str
    contact: EvidenceContact | None


class ComplaintDetailOut(ComplaintOut):
    evidence: list[EvidenceOut]


class Created(BaseModel):
    id: str


class Done(BaseModel):
    ok: bool = True
