"""Where the other services plug into the simulator, imported lazily.

Each seam is looked up once per simulation. A missing service means that part of the day is
skipped (or, for the gate, replaced by a clearly named stand-in) and the report says so; the
simulator never fakes a service's results.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


def optional(module: str, attr: str | None = None) -> Any:
    """The module (or one attribute of it), or None while it has not landed yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, attr, None) if attr else mod


@dataclass(frozen=True)
class Seams:
    """The services found. None = not available in this checkout."""

    permits: ModuleType | None
    agreements: ModuleType | None
    daily_run: Any
    worker: Any
    complaints: ModuleType | None

    @classmethod
    def detect(cls) -> Seams:
        return cls(
            permits=optional("parley.services.permits"),
            agreements=optional("parley.services.agreements"),
            daily_run=optional("parley.services.daily_run", "run_daily"),
            worker=optional("parley.services.worker", "work_once"),
            complaints=optional("parley.services.complaints"),
        )

    def describe(self, *, used_daily_run: bool, used_worker: bool,
                 used_agreements: bool, used_complaints: bool = False) -> dict[str, str]:
        """What ran for real in the Parley run, for the report."""
        return {
            "gate": ("real: parley.services.permits.request_permit / record_outcome per contact"
                     if self.permits else
                     "STAND-IN: parley.core.gate.decide on facts built by the simulator "
                     "(parley.services.permits not available)"),
            "agreements": ("real: parley.services.agreements propose/accept" if used_agreements
                           else "STAND-IN: the simulator writes the agreement row (status active "
                           "→ kept/broken) at the moment of acceptance; "
                           "parley.services.agreements not wired yet"),
            "daily_run": ("real: parley.services.daily_run.run_daily" if used_daily_run else
                          "skipped (not available or not wired): collectors call from the "
                          "delinquency snapshot instead"),
            "worker": ("real: parley.services.worker.work_once" if used_worker else
                       "skipped (not available): no SMS/e-mail from the strategy queue"),
            "complaints": ("real: parley.services.complaints.file_complaint as the borrower "
                           "(the naive lender has nowhere to complain: counted only)"
                           if used_complaints else
                           "counted by the simulator only (none filed in this run, or no "
                           "complaints service)"),
            "payments": "real: parley.services.payments (post_payments / post_payment)",
            "delinquency": "real: parley.services.delinquency.snapshot each morning",
        }
