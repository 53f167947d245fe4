"""The naive configuration: the collection systems borrowers complain about.

- A dialer works from a list printed at 07:30 (everyone past due), 08:00–22:30 in the
  lender's zone, whatever the borrower's zone; nobody asks a gate.
- It is a power dialer: unanswered rings cost an agent seconds, not capacity. Unanswered
  numbers are redialled every 25 minutes, up to 8 times a day; a conversation that did not
  clear the arrears is followed by another call 90 minutes later.
- After two unanswered calls the dialer rings the emergency contacts and tells them why.
- Agreements and holds (dispute, cease) reach the dialer two days late (the plan "was never
  formally recorded", "the dialer was not updated"), and third-party refusals never do.

It runs in memory (it has no database of its own); the borrowers it calls behave exactly as
in the Parley run, and the judge counts what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from parley.core.gate import CallResult, HoldKind, Purpose
from parley.sim.engine import Plan, Run, Task
from parley.sim.portfolio import SimBorrower

RECORD_LAG = timedelta(days=2)
REDIAL_MINUTES = 25
REDIALS_PER_DAY = 8
RECALL_AFTER_TALK_MINUTES = 90
TALKS_PER_DAY = 4


class NaiveRun(Run):
    name = "naive"
    shift = ((8, 0), (22, 30))
    tp_purpose = Purpose.COLLECTION  # it tells the contact about the debt

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tp_called: set[tuple[str, int]] = set()

    def setup(self, before: list[tuple[str, int, date]]) -> None:
        for loan_id, number, _on in before:
            ls = self.loans[loan_id]
            ls.paid += ls.loan.schedule[number - 1].amount * ls.borrower.profile.partial_share_pct // 100

    def call_list(self, day: date) -> list[Task]:
        """Everyone past due this morning, unless the dialer has been told otherwise."""
        at = self.shift_start(day)
        out = []
        for ls in self.loans.values():
            dpd = ls.dpd(day)
            if dpd <= 0:
                continue
            if ls.plan is not None and ls.plan.known_at <= at:
                continue
            st = self.state[ls.borrower.id]
            if any(k <= at for k in st.hold_known_at):
                continue
            out.append(Task(ls.borrower, ls, priority=dpd))
        out.sort(key=lambda t: (-t.priority, t.loan.loan.id))
        self.tp_called.clear()
        return out

    def shift_start(self, day: date) -> datetime:
        from parley.sim.engine import BUSINESS_ZONE
        from parley.sim.portfolio import local_instant

        return local_instant(day, 7, 30, BUSINESS_ZONE)

    def follow_up(self, task: Task, result: CallResult, at: datetime,
                  push: Callable[[Task, datetime], None]) -> None:
        if task.tp:
            return
        if result in (CallResult.CONVERSATION, CallResult.REFUSED):
            task.talks += 1
            if task.loan.overdue(self.today) > 0 and task.talks < TALKS_PER_DAY:
                push(task, at + timedelta(minutes=RECALL_AFTER_TALK_MINUTES))
            return
        if task.tries + 1 < REDIALS_PER_DAY:
            push(task, at + timedelta(minutes=REDIAL_MINUTES))
        if task.tries + 1 >= 2:
            b = task.borrower
            for t in b.third_parties:
                if (b.id, t.index) not in self.tp_called:
                    self.tp_called.add((b.id, t.index))
                    push(Task(b, task.loan, tp=t.index, priority=task.priority),
                         at + timedelta(minutes=5))

    def cost(self, result: CallResult) -> tuple[float, bool]:
        if result in (CallResult.CONVERSATION, CallResult.REFUSED):
            return 6.0, True
        return 0.3, False  # the dialer rang out; the agent barely noticed

    def record_plan(self, plan: Plan) -> bool:
        plan.known_at = plan.made_at + RECORD_LAG
        return True

    def record_hold(self, b: SimBorrower, kind: HoldKind, at: datetime) -> datetime:
        return at + RECORD_LAG
