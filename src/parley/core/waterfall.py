"""How a payment is split across what is owed: the waterfall.

A payment first settles instalments already due, oldest first (by default penalty, fees,
interest, then principal within each instalment); what is left prepays later instalments in
order; anything beyond the whole outstanding balance is held as credit. The split is a pure
function of the outstanding amounts, so replaying the ledger reproduces it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class Component(StrEnum):
    PRINCIPAL = "principal"
    INTEREST = "interest"
    FEE = "fee"
    PENALTY = "penalty"


class WaterfallOrder(StrEnum):
    INSTALLMENT_MAJOR = "installment-major"  # each instalment in full, oldest first
    COMPONENT_MAJOR = "component-major"  # e.g. all penalties (oldest first), then all fees, …


@dataclass(frozen=True, slots=True)
class Waterfall:
    """The allocation policy: component order and which axis comes first."""

    components: tuple[Component, ...] = (
        Component.PENALTY,
        Component.FEE,
        Component.INTEREST,
        Component.PRINCIPAL,
    )
    order: WaterfallOrder = WaterfallOrder.INSTALLMENT_MAJOR

    def __post_init__(self) -> None:
        if sorted(self.components) != sorted(Component):
            raise ValueError("a waterfall must name each component exactly once")

    @classmethod
    def parse(cls, text: str) -> Waterfall:
        """'penalty,fee,interest,principal' optionally followed by ';component-major'."""
        order_part = WaterfallOrder.INSTALLMENT_MAJOR
        if ";" in text:
            text, order_text = text.split(";", 1)
            order_part = WaterfallOrder(order_text.strip())
        return cls(tuple(Component(c.strip()) for c in text.split(",")), order_part)


@dataclass(frozen=True, slots=True)
class Outstanding:
    """What is still owed on one instalment, per component, in minor units (all ≥ 0)."""

    number: int
    due_on: date
    principal: int = 0
    interest: int = 0
    fee: int = 0
    penalty: int = 0

    def of(self, component: Component) -> int:
        value: int = getattr(self, component.value)
        return value


@dataclass(frozen=True, slots=True)
class AllocationLine:
    number: int
    component: Component
    amount: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """The split of one payment: lines per instalment and component, plus unallocated credit."""

    lines: tuple[AllocationLine, ...]
    credit: int

    @property
    def allocated(self) -> int:
        return sum(line.amount for line in self.lines)


def allocate(
    amount: int, owed: Sequence[Outstanding], paid_on: date, waterfall: Waterfall = Waterfall()
) -> Allocation:
    """Split `amount` (> 0) over `owed` according to `waterfall`.

    Instalments due on or before `paid_on` come first in due order; later ones follow in due
    order as prepayment. The same component order applies to both groups.
    """
    if amount <= 0:
        raise ValueError("a payment allocates a positive amount")
    ordered = sorted(owed, key=lambda o: (o.due_on, o.number))
    due = [o for o in ordered if o.due_on <= paid_on]
    later = [o for o in ordered if o.due_on > paid_on]
    remaining = amount
    lines: list[AllocationLine] = []
    for group in (due, later):
        if waterfall.order is WaterfallOrder.INSTALLMENT_MAJOR:
            slots = [(o, c) for o in group for c in waterfall.components]
        else:
            slots = [(o, c) for c in waterfall.components for o in group]
        for o, c in slots:
            if remaining == 0:
                break
            take = min(o.of(c), remaining)
            if take > 0:
                lines.append(AllocationLine(o.number, c, take))
                remaining -= take
    return Allocation(tuple(lines), remaining)
