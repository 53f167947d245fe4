"""The day loop. One simulated world per run, the same portfolio and the same borrowers:

- **Parley** (`ParleyRun`) runs the real system on a real database: the delinquency snapshot
  and the daily run each morning, the worker sending SMS/e-mail through a channel adapter,
  simulated collectors with limited capacity working their call tasks, every contact
  permitted by the gate at the moment it is made, agreements through the agreements service,
  payments through the payments service, holds and complaints through theirs.
- **Naive** (`parley.sim.naive`) dials from a morning list without asking anyone.

Every contact either run makes is judged by `parley.sim.judge` (the pure gate on the true
facts at that moment), so the violation counts of both come from the same place.

Within a simulated day things happen in this order (business time, Asia/Shanghai), because
each step needs what the previous one recorded:
  07:00 delinquency snapshot, then the daily run (which reviews agreements first)
  08:00 payments borrowers make on their own (instalments, late payments, plan instalments)
  shift  collectors (or the dialer) work the list; the worker wakes every 30 minutes;
         payments, plans, holds and complaints happen in calls
  23:59 agreements reviewed: kept when fully paid, broken when an instalment is 3 days late
Time is a FixedClock moved to each event (never backwards); nothing reads the wall clock.
What ran for real is in the report (`SERVICES`).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from parley.core.delinquency import BucketScheme
from parley.core.gate import (
    AgreementFact,
    BorrowerFacts,
    CallResult,
    Channel,
    ContactRecord,
    ContactRequest,
    DebtStanding,
    Decision,
    Facts,
    Hold,
    HoldKind,
    PersonFacts,
    PhoneFact,
    Purpose,
    Role,
    RulePack,
    decide,
)
from parley.services.gate_check import load_pack
from parley.sim import behaviour as bh
from parley.sim.judge import VIOLATION_KEYS, wrongs
from parley.sim.portfolio import Portfolio, SimBorrower, SimLoan, local_instant

BUSINESS_ZONE = "Asia/Shanghai"
GRACE_DAYS = 3  # an agreement instalment missed by more than this breaks the agreement
MIN_INSTALMENT = 30_000  # 300.00 CNY, the default policy's smallest instalment
HISTORY_DAYS = 14  # facts carry this much history (the CN and US packs look back ≤ 9 days)
DEFAULT_START = date(2026, 3, 2)
_BZ = ZoneInfo(BUSINESS_ZONE)


@dataclass(frozen=True)
class SimConfig:
    """borrowers, days, seed: the simulation. start: the first simulated day.
    agents: collectors (0 = one per 500 borrowers, at least 2). capacity: calls each per day
    (attempts an agent dials or talks through; a naive dialer's unanswered rings are free).
    shards: how many borrower shards ``simulate_sharded`` ran (1 = ``simulate``, one database);
    the summary is deterministic for (seed, shards)."""

    borrowers: int = 1000
    days: int = 30
    seed: int = 1
    start: date = DEFAULT_START
    agents: int = 0
    capacity: int = 60
    shards: int = 1

    @property
    def agent_count(self) -> int:
        return self.agents or max(2, -(-self.borrowers // 500))


# --- the world -------------------------------------------------------------------------------


@dataclass
class Plan:
    """An agreement as the borrower made it. made_at: when agreed (the truth); known_at: when
    the run's system recorded it. instalments: [due_on, amount, paid] (paid True/False)."""

    id: str
    number: int
    loan_id: str
    borrower_id: str
    kind: str
    made_at: datetime
    known_at: datetime
    instalments: list[list[Any]]
    status: str = "active"
    ended_on: date | None = None
    soured: bool = False  # the borrower stopped paying it after being called regardless

    @property
    def total(self) -> int:
        return sum(i[1] for i in self.instalments)


@dataclass
class LoanState:
    loan: SimLoan
    borrower: SimBorrower
    cum_due: list[int]
    paid: int = 0
    plan: Plan | None = None
    resumed: bool = False  # after a kept plan the borrower pays on their own again

    def first_unpaid(self) -> int | None:
        k = bisect_right(self.cum_due, self.paid)
        return None if k >= len(self.cum_due) else k

    def dpd(self, day: date) -> int:
        """Days past due at the end of ``day`` (oldest instalment unpaid with due_on < day)."""
        k = self.first_unpaid()
        if k is None:
            return 0
        due = self.loan.schedule[k].due_on
        return (day - due).days if due < day else 0

    def overdue(self, day: date) -> int:
        """Amount due on or before ``day`` and not paid."""
        sched = self.loan.schedule
        k = bisect_right([s.due_on for s in sched], day)
        return max(0, (self.cum_due[k - 1] if k else 0) - self.paid)

    @property
    def remaining(self) -> int:
        return self.cum_due[-1] - self.paid


@dataclass
class BorrowerState:
    history: list[ContactRecord] = field(default_factory=list)
    hist_ts: list[float] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    hold_known_at: list[datetime] = field(default_factory=list)
    known_invalid: set[str] = field(default_factory=set)
    tp_refused_at: dict[int, datetime] = field(default_factory=dict)
    plans: int = 0
    hostile: bool = False  # a third party was told about the debt


@dataclass
class Task:
    """One planned call. tp: 0 = the borrower, else a third party's 1-based index.
    item: the contact-queue item it drains (None = a call the collector decided on)."""

    borrower: SimBorrower
    loan: LoanState
    tp: int = 0
    tries: int = 0
    talks: int = 0
    priority: int = 0
    item: int | None = None
    last_to: str = ""  # the number or address of the latest attempt


@dataclass(frozen=True)
class Answer:
    """The gate's answer as the simulator needs it. dropped: the task is gone (e.g. its
    queue item was cancelled when an agreement was accepted); nothing was decided."""

    allowed: bool
    rule_ids: tuple[str, ...] = ()
    next_allowed_at: datetime | None = None
    dropped: bool = False

    @classmethod
    def of(cls, decision: Decision) -> Answer:
        return cls(decision.allowed, tuple(f.rule_id for f in decision.denials),
                   decision.next_allowed_at)


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)  # violations found by the judge
    denials: Counter[str] = field(default_factory=Counter)  # what the gate refused (Parley)
    contacts_by_day: list[dict[str, int]] = field(default_factory=list)
    recovered_by_day: list[dict[str, int]] = field(default_factory=list)
    agreements_by_day: list[dict[str, int]] = field(default_factory=list)
    violations_by_day: list[int] = field(default_factory=list)


class Run:
    """The world one configuration acts in. Subclasses say how contacts are made."""

    name = "base"
    shift = ((9, 0), (20, 0))  # business-time start and end of the collectors' day
    tp_purpose = Purpose.LOCATION

    def __init__(self, portfolio: Portfolio, config: SimConfig, buckets: BucketScheme) -> None:
        self.p = portfolio
        self.config = config
        self.buckets = buckets
        self.dice = bh.Dice(config.seed)
        self.pack: RulePack = load_pack("CN")
        self.packs = {"CN": self.pack}
        self.loans = {x.id: LoanState(x, b, _cumulative(x)) for b, x in
                      zip(portfolio.borrowers, portfolio.loans, strict=True)}
        self.loan_of = {ls.borrower.id: ls for ls in self.loans.values()}
        self.state: dict[str, BorrowerState] = defaultdict(BorrowerState)
        self.stats = Stats()
        self.plans: dict[str, Plan] = {}  # active plans, by id, in creation order
        self.plan_agenda: dict[date, list[tuple[Plan, int]]] = defaultdict(list)
        self.day_no = 0
        self.today = config.start
        self.today_calls: Counter[str] = Counter()
        self.today_talks: Counter[str] = Counter()
        self.today_contacts: Counter[str] = Counter()
        self.day_contacts: Counter[str] = Counter()
        self.day_recovered: Counter[str] = Counter()
        self.day_violations = 0
        self.pay_seq = 0
        self.agent = 0

    # -- hooks ----------------------------------------------------------------------------
    def now(self, at: datetime) -> None:
        """Move the run's clock (the Parley run sets its FixedClock)."""

    def morning(self, day: date) -> None:
        """07:00: the morning job."""

    def record_payments(self, items: list[tuple[str, str, datetime, int]], batch: bool) -> None:
        """Payments (id, loan, at, amount) the system must record."""

    def call_list(self, day: date) -> list[Task]:
        raise NotImplementedError

    def wanted(self, task: Task, at: datetime) -> bool:
        return True

    def ask(self, task: Task, req: ContactRequest) -> tuple[Answer | None, Any]:
        """The gate's answer (None = nobody asked) and a handle for recording the outcome."""
        return None, None

    def tick_until(self, at: datetime) -> None:
        """Let time-driven work (the worker) catch up to ``at``."""

    def outcome(self, handle: Any, result: CallResult, at: datetime) -> None:
        """Record the outcome of a permitted attempt."""

    def follow_up(self, task: Task, result: CallResult, at: datetime, push: Callable[[Task, datetime], None]) -> None:
        """What the collector or dialer does next."""

    def record_plan(self, plan: Plan) -> bool:
        """The system learns of an agreement (Parley: at once; naive: days later). False =
        the system refused it (the plan is not made)."""
        return True

    def record_hold(self, b: SimBorrower, kind: HoldKind, at: datetime) -> datetime:
        """Returns when the system knows of the hold."""
        return at

    def pick_number(self, task: Task) -> str | None:
        phones = task.borrower.phones
        return phones[task.tries % len(phones)].number

    def end_of_day(self, day: date) -> None:
        pass

    def record_complaint(self, task: Task, wrongs_found: tuple[str, ...], at: datetime) -> None:
        """The borrower complains (投诉) about a contact; the naive lender has nowhere to
        take it (brief, failure 4), so only the count changes."""

    def cost(self, result: CallResult) -> tuple[float, bool]:
        """Minutes of the collector's time a call took, and whether it counts against the
        collector's daily capacity."""
        if result in (CallResult.CONVERSATION, CallResult.REFUSED):
            return 6.0, True
        return 1.0, True

    # -- money ----------------------------------------------------------------------------
    def pay(self, ls: LoanState, amount: int, at: datetime, *, plan: bool = False,
            batch: list[tuple[str, str, datetime, int]] | None = None) -> int:
        amount = min(amount, ls.remaining)
        if amount <= 0:
            return 0
        dpd = ls.dpd(self.today)
        if dpd > 0 or plan:
            self.stats.recovered += amount
            self.day_recovered[self.buckets.bucket_for(max(dpd, 1))] += amount
        ls.paid += amount
        self.pay_seq += 1
        item = (f"{self.name}-{ls.loan.id}-{self.pay_seq}", ls.loan.id, at, amount)
        if batch is not None:
            batch.append(item)
        else:
            self.record_payments([item], batch=False)
        self.stats.counts["payments"] += 1
        return amount

    # -- facts ------------------------------------------------------------------------------
    def facts(self, b: SimBorrower, tp: int, at: datetime) -> Facts:
        """The true facts at ``at``, as the judge sees them (not what either system knew)."""
        st = self.state[b.id]
        ts = at.timestamp()
        lo = bisect_left(st.hist_ts, ts - HISTORY_DAYS * 86400)
        history = tuple(st.history[lo:])
        holds = tuple(h for h in st.holds if (h.since or at) <= at)
        phones = tuple(PhoneFact(p.number, p.valid) for p in b.phones)
        borrower = BorrowerFacts(b.id, phones, b.candidate_zones, holds)
        agreements = []
        ls = self.loan_of[b.id]
        plan = ls.plan
        if plan is not None and plan.made_at <= at:
            agreements.append(AgreementFact(ls.loan.id, plan.status, date.min))
        if tp:
            t = b.third_parties[tp - 1]
            refused_at = st.tp_refused_at.get(tp)
            person = PersonFacts(f"{b.id}/tp{tp}", Role.THIRD_PARTY, t.zones,
                                 refused=refused_at is not None and refused_at <= at)
        else:
            person = PersonFacts(b.id, Role.BORROWER, b.candidate_zones, holds)
        k = ls.first_unpaid()
        debts = (DebtStanding(ls.loan.id, None if k is None else ls.loan.schedule[k].due_on),)
        return Facts(person, borrower, history, tuple(agreements), debts=debts)

    # -- one call -----------------------------------------------------------------------------
    def attempt(self, task: Task, at: datetime, push: Callable[[Task, datetime], None]
                ) -> tuple[float, bool]:
        """Try one call at ``at``; returns the minutes it took and whether it used capacity."""
        b, ls = task.borrower, task.loan
        if not self.wanted(task, at):
            return 0.2, False
        st = self.state[b.id]
        if task.tp:
            tp = b.third_parties[task.tp - 1]
            to, person, role, purpose = tp.number, f"{b.id}/tp{task.tp}", Role.THIRD_PARTY, self.tp_purpose
        else:
            num = self.pick_number(task)
            if num is None:
                return 0.2, False
            to, person, role, purpose = num, b.id, Role.BORROWER, Purpose.COLLECTION
        self.now(at)
        task.last_to = to
        req = ContactRequest(at, Channel.CALL, person, role, to, purpose, ls.loan.id)
        answer, handle = self.ask(task, req)
        if answer is not None and answer.dropped:
            return 0.2, False
        if answer is not None and not answer.allowed:
            for rule_id in answer.rule_ids:
                self.stats.denials[rule_id] += 1
            self.stats.counts["gate_denials"] += 1
            nxt = answer.next_allowed_at
            if nxt is not None and nxt < self.shift_end:
                push(task, nxt.astimezone(UTC) + timedelta(seconds=1))
            return 0.3, False
        verdict = decide(req, self.facts(b, task.tp, at), self.pack)
        found = wrongs(verdict, self.pack)
        day = self.day_no
        # The borrower's (or contact's) side.
        local_hour = _local_hour(at, req_zone(b, task.tp))
        if task.tp:
            n = self.today_calls[person]
            self.today_calls[person] += 1
            if bh.third_party_answers(self.dice, b.id, task.tp, day, local_hour, n):
                told = purpose is not Purpose.LOCATION
                if bh.third_party_refuses(self.dice, b.id, task.tp, day, n, told):
                    result = CallResult.REFUSED
                    st.tp_refused_at.setdefault(task.tp, at)
                else:
                    result = CallResult.CONVERSATION
            else:
                result = CallResult.NO_ANSWER
        else:
            phone = next(p for p in b.phones if p.number == to)
            n = self.today_calls[b.id]
            self.today_calls[b.id] += 1
            if not phone.valid:
                result = (CallResult.WRONG_PARTY if self.dice.below(60, "wrong", b.id, to)
                          else CallResult.NOT_CONNECTED)
            elif bh.answers(self.dice, b.profile, b.id, day, local_hour, n, to, n):
                result = CallResult.CONVERSATION
            else:
                result = CallResult.NO_ANSWER if self.dice.below(75, "vm", b.id, day, n) else CallResult.VOICEMAIL
        outcome: bh.Outcome | None = None
        if result is CallResult.CONVERSATION and not task.tp:
            k = self.today_talks[b.id]
            self.today_talks[b.id] += 1
            outcome = bh.conversation(self.dice, b.profile, b.id, day, k)
            if st.hostile and bh.hostile_refuses(self.dice, b.id, day, k):
                outcome = bh.Outcome.REFUSE
            if outcome is bh.Outcome.REFUSE:
                result = CallResult.REFUSED
        # On the record (the contact as it happened) and judged.
        self.remember(st, ContactRecord(at, Channel.CALL, person, role, to, ls.loan.id, result, purpose))
        self.outcome(handle, result, at)
        self._count(task, result, found, verdict, at)
        if outcome is not None:
            self.apply(b, ls, outcome, at)
        self.follow_up(task, result, at, push)
        task.tries += 1
        return self.cost(result)

    @staticmethod
    def remember(st: BorrowerState, record: ContactRecord) -> None:
        """Add a contact to the borrower's history, kept in time order."""
        ts = record.at.timestamp()
        k = bisect_right(st.hist_ts, ts)
        st.hist_ts.insert(k, ts)
        st.history.insert(k, record)

    def _count(self, task: Task, result: CallResult | None, found: tuple[str, ...],
               verdict: Decision, at: datetime, channel: str = "") -> None:
        c = self.stats.counts
        c["contacts"] += 1
        channel = channel or ("third_party_call" if task.tp else "call")
        self.day_contacts[channel] += 1
        if not task.tp and result in (CallResult.CONVERSATION, CallResult.REFUSED):
            c["right_party_contacts"] += 1
        for k in found:
            c[k] += 1
        if found:
            self.day_violations += 1
            for f in verdict.denials:
                self.stats.by_rule[f.rule_id] += 1
        b = task.borrower
        n = self.today_contacts[b.id]
        self.today_contacts[b.id] += 1
        if bh.complains(self.dice, b.profile, b.id, self.day_no, n, found):
            c["complaints"] += 1
            self.record_complaint(task, found, at)
        plan = task.loan.plan
        if ("contacts_after_agreement" in found and plan is not None and not plan.soured
                and bh.sours_on_plan(self.dice, b.profile, b.id, self.day_no, n)):
            plan.soured = True
            c["agreements_soured"] += 1
        if "third_party_disclosures" in found:
            self.state[b.id].hostile = True

    def apply(self, b: SimBorrower, ls: LoanState, outcome: bh.Outcome, at: datetime) -> None:
        """The effects of a conversation, at ``at``."""
        day = self.today
        owed = ls.overdue(day)
        if outcome is bh.Outcome.PAY_FULL and owed:
            self.pay(ls, owed, at)
        elif outcome is bh.Outcome.PAY_PART and owed:
            share = b.profile.partial_share_pct if b.profile.partial_share_pct < 100 else 40
            self.pay(ls, max(100, owed * share // 100 // 100 * 100), at)
        elif outcome in (bh.Outcome.PROMISE, bh.Outcome.PLAN) and owed and ls.plan is None:
            st = self.state[b.id]
            # Plans are shaped to the default policy (parley/policies/default.yaml): at least
            # 300.00 per instalment (else a promise), fortnightly, first payment in 3 days.
            parts = min(3, owed // MIN_INSTALMENT)
            if outcome is bh.Outcome.PROMISE or parts < 2:
                dues = [(day + timedelta(days=bh.promise_days(self.dice, b.profile, b.id, self.day_no)), owed)]
                kind = "promise"
            else:
                each = owed // parts // 100 * 100
                dues = [(day + timedelta(days=3 + 14 * k), each if k < parts - 1 else owed - each * (parts - 1))
                        for k in range(parts)]
                kind = "installment_plan"
            plan = Plan(f"A-{ls.loan.id}-{st.plans + 1}", st.plans + 1, ls.loan.id, b.id, kind, at, at,
                        [[d, a, False] for d, a in dues])
            if not self.record_plan(plan):
                self.stats.counts["agreements_refused"] += 1
                return
            st.plans += 1
            ls.plan = plan
            self.plans[plan.id] = plan
            self.stats.counts["agreements_made"] += 1
            for k, (d, _a) in enumerate(dues, start=1):
                if bh.keeps_instalment(self.dice, b.profile, b.id, st.plans, k):
                    self.plan_agenda[d].append((plan, k))
        elif outcome in (bh.Outcome.DISPUTE, bh.Outcome.CEASE):
            kind = HoldKind.DISPUTE if outcome is bh.Outcome.DISPUTE else HoldKind.CEASE
            st = self.state[b.id]
            if not any(h.kind is kind for h in st.holds):
                known = self.record_hold(b, kind, at)
                st.holds.append(Hold(kind, None, at))
                st.hold_known_at.append(known)
                self.stats.counts["holds"] += 1

    # -- the day ------------------------------------------------------------------------------
    def run_day(self, day_no: int, base_agenda: dict[date, list[tuple[str, int]]]) -> None:
        day = self.config.start + timedelta(days=day_no)
        self.day_no, self.today = day_no, day
        self.today_calls.clear()
        self.today_talks.clear()
        self.today_contacts.clear()
        self.day_contacts = Counter()
        self.day_recovered = Counter()
        self.day_violations = 0
        self.now(local_instant(day, 7, 0, BUSINESS_ZONE))
        self.morning(day)
        # 08:00: payments made without anyone asking, in loan order then instalment order.
        at = local_instant(day, 8, 0, BUSINESS_ZONE)
        self.now(at)
        batch: list[tuple[str, str, datetime, int]] = []
        for loan_id, number in base_agenda.get(day, ()):
            ls = self.loans[loan_id]
            prof = ls.borrower.profile
            if not (prof.pays_on_own(number) or ls.resumed) or ls.plan is not None:
                continue
            inst = ls.loan.schedule[number - 1]
            amount = inst.amount * prof.partial_share_pct // 100
            self.pay(ls, min(amount, ls.cum_due[number - 1] - ls.paid), at, batch=batch)
        for plan, k in self.plan_agenda.pop(day, ()):
            if plan.status != "active" or plan.soured:
                continue
            ls = self.loans[plan.loan_id]
            due = plan.instalments[k - 1]
            if self.pay(ls, due[1], at, plan=True, batch=batch):
                due[2] = True
        if batch:
            self.record_payments(batch, batch=True)
        # The collectors' day.
        (h1, m1), (h2, m2) = self.shift
        start = local_instant(day, h1, m1, BUSINESS_ZONE)
        self.shift_end = local_instant(day, h2, m2, BUSINESS_ZONE)
        tasks: list[tuple[float, int, int, Task]] = []
        seq = 0

        def push(task: Task, when: datetime) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(tasks, (when.timestamp(), -task.priority, seq, task))

        for task in self.call_list(day):
            push(task, start)
        agents = [(start.timestamp(), a) for a in range(self.config.agent_count)]
        heapq.heapify(agents)
        used = [0] * self.config.agent_count
        end_ts = self.shift_end.timestamp()
        while agents and tasks:
            free, a = heapq.heappop(agents)
            t = max(free, tasks[0][0])
            if t >= end_ts or used[a] >= self.config.capacity:
                continue
            _, _, _, task = heapq.heappop(tasks)
            when = datetime.fromtimestamp(t, UTC)
            self.tick_until(when)
            self.agent = a
            minutes, counted = self.attempt(task, when, push)
            if counted:
                used[a] += 1
            heapq.heappush(agents, (t + minutes * 60.0, a))
        self.tick_until(local_instant(day, 23, 0, BUSINESS_ZONE))
        # End of day: agreements reviewed.
        self.now(local_instant(day, 23, 59, BUSINESS_ZONE))
        self.review_plans(day)
        self.end_of_day(day)
        self.stats.contacts_by_day.append(dict(self.day_contacts))
        self.stats.recovered_by_day.append(dict(self.day_recovered))
        self.stats.agreements_by_day.append({
            "made": self.stats.counts["agreements_made"],
            "kept": self.stats.counts["agreements_kept"],
            "broken": self.stats.counts["agreements_broken"],
            "active": len(self.plans)})
        self.stats.violations_by_day.append(self.day_violations)

    def review_plans(self, day: date) -> None:
        """Kept when every instalment is paid; broken when one is unpaid GRACE_DAYS after it
        fell due (the default policy's rule)."""
        for plan in list(self.plans.values()):
            if all(i[2] for i in plan.instalments):
                self.end_plan(plan, "kept", day)
            elif any(not i[2] and (day - i[0]).days >= GRACE_DAYS for i in plan.instalments):
                self.end_plan(plan, "broken", day)

    def end_plan(self, plan: Plan, status: str, day: date) -> None:
        plan.status = status
        plan.ended_on = day
        ls = self.loans[plan.loan_id]
        ls.plan = None
        ls.resumed = status == "kept"
        self.stats.counts[f"agreements_{status}"] += 1
        del self.plans[plan.id]


def summarise(stats: Stats) -> dict[str, Any]:
    """A run's summary (the JSON object of ``parley simulate``) from its statistics."""
    from parley.core.money import format_minor

    c = stats.counts
    out: dict[str, Any] = {
        "contacts": c["contacts"],
        "right_party_contacts": c["right_party_contacts"],
        "recovered": format_minor(stats.recovered, "CNY"),
        "agreements_made": c["agreements_made"],
        "agreements_kept": c["agreements_kept"],
        "agreements_broken": c["agreements_broken"],
        "agreements_abandoned_after_calls": c["agreements_soured"],
        "agreements_refused_by_policy": c["agreements_refused"],
    }
    for k in VIOLATION_KEYS:
        out[k] = c[k]
    out["complaints"] = c["complaints"]
    out["holds_placed"] = c["holds"]
    out["payments"] = c["payments"]
    out["gate_denials"] = c["gate_denials"]
    out["violations_by_rule"] = dict(sorted(stats.by_rule.items()))
    out["denials_by_rule"] = dict(sorted(stats.denials.items()))
    return out


def _cumulative(loan: SimLoan) -> list[int]:
    out, total = [], 0
    for s in loan.schedule:
        total += s.amount
        out.append(total)
    return out


def req_zone(b: SimBorrower, tp: int) -> str:
    """The zone used for the person's sense of the hour (their first candidate zone)."""
    zones = b.third_parties[tp - 1].zones if tp else b.candidate_zones
    return zones[0] if zones else BUSINESS_ZONE


_ZONES: dict[str, ZoneInfo] = {}


def _local_hour(at: datetime, zone: str) -> int:
    z = _ZONES.get(zone)
    if z is None:
        z = _ZONES[zone] = ZoneInfo(zone)
    return at.astimezone(z).hour


def base_agenda(p: Portfolio, end: date) -> tuple[dict[date, list[tuple[str, int]]],
                                                   list[tuple[str, int, date]]]:
    """When each instalment would be paid with nobody asking: (agenda from start to end,
    prehistory payments before start as (loan, instalment, paid_on))."""
    agenda: dict[date, list[tuple[str, int]]] = defaultdict(list)
    before: list[tuple[str, int, date]] = []
    for b, x in zip(p.borrowers, p.loans, strict=True):
        prof = b.profile
        for s in x.schedule:
            on = s.due_on + timedelta(days=prof.late_days)
            if on < p.start:
                if prof.pays_on_own(s.number):
                    before.append((x.id, s.number, on))
            elif on < end:  # paid then if the borrower still pays on their own (see run_day)
                agenda[on].append((x.id, s.number))
    return agenda, before


# --- Parley: the real system -------------------------------------------------------------------


class SimProvider:
    """The SMS/e-mail provider of the simulation: delivers nothing, remembers what was sent
    (idempotent by key, like the console provider) so the simulator can judge it."""

    name = "sim"
    channels = frozenset({"sms", "email"})
    idempotent = True

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._seen: dict[str, Any] = {}
        self.sent: list[Any] = []

    def send(self, message: Any) -> Any:
        from parley.adapters.channels.base import ProviderReceipt

        seen = self._seen.get(message.idempotency_key)
        if seen is not None:
            return ProviderReceipt(self.name, seen.message_id, message.idempotency_key,
                                   self._clock.now(), duplicate=True, detail="duplicate key")
        receipt = ProviderReceipt(self.name, f"sim-{len(self._seen) + 1}",
                                  message.idempotency_key, self._clock.now())
        self._seen[message.idempotency_key] = receipt
        self.sent.append(message)
        return receipt


WORKER_TICK = timedelta(minutes=30)  # how often the simulated worker process wakes up


class ParleyRun(Run):
    """Parley on a real database: every call asks the gate at the moment it is made.

    The morning run plans the day (SMS, e-mail and call tasks assigned to collectors), the
    worker drains SMS/e-mail every 30 simulated minutes through the simulator's provider, and
    collectors work their call tasks through ``start_call`` / ``log_call_outcome``; follow-up
    calls not in the queue (another number, a third party) ask ``request_permit``.
    """

    name = "parley"
    shift = ((9, 0), (20, 0))
    tp_purpose = Purpose.LOCATION

    def __init__(self, portfolio: Portfolio, config: SimConfig, buckets: BucketScheme,
                 ctx: Any) -> None:
        super().__init__(portfolio, config, buckets)
        self.ctx = ctx
        self.tp_ids: dict[tuple[str, int], int] = {}
        self.tp_queued: set[str] = set()
        self.plan_ids: dict[str, Plan] = {}  # agreement id (service) → the plan
        self.refusals: list[str] = []
        self.collectors: list[str] = []
        self.ticks: list[datetime] = []
        self.provider = SimProvider(ctx.clock)
        self.number_of: dict[str, str] = {}
        self.last_status = ""
        self.used_complaints = False

    # setup: the book as `parley import` would leave it, and the payments made before day 0
    def setup(self, before: list[tuple[str, int, date]],
              progress: Callable[[int], None] | None = None) -> None:
        from sqlalchemy import text

        from parley.services.auth import create_staff
        from parley.services.payments import PaymentRecord, post_payments
        from parley.services.templates import seed_default_templates
        from parley.sim.portfolio import write

        start_at = local_instant(self.config.start, 0, 0, BUSINESS_ZONE)
        self.now(start_at)
        with self.ctx.db.transaction() as conn:
            if conn.execute(text("SELECT COUNT(*) FROM borrower")).scalar_one():
                from parley.errors import InvalidInput

                raise InvalidInput("the simulator needs an empty database", record="database",
                                   field="database_url")
            write(conn, self.p, self.ctx.keyring, start_at, progress)
        with self.ctx.db.read() as conn:
            seen: Counter[str] = Counter()
            for bid, tid in conn.execute(text("SELECT borrower_id, id FROM third_party ORDER BY id")):
                seen[bid] += 1
                self.tp_ids[(bid, seen[bid])] = int(tid)
        recs = []
        for loan_id, number, on in before:
            ls = self.loans[loan_id]
            amount = ls.loan.schedule[number - 1].amount * ls.borrower.profile.partial_share_pct // 100
            ls.paid += amount
            recs.append(PaymentRecord(f"pre-{loan_id}-{number}", loan_id,
                                      local_instant(on, 12, 0, BUSINESS_ZONE), amount, "CNY",
                                      source="import"))
        with self.ctx.db.transaction() as conn:
            for i in range(0, len(recs), 20_000):
                post_payments(self.ctx, conn, recs[i:i + 20_000], start_at)
        seed_default_templates(self.ctx)
        for k in range(1, self.config.agent_count + 1):
            # No password: simulated collectors never sign in, and each argon2 hash costs
            # ≈ 0.3 s (a minute of set-up for the 200 collectors of 100,000 borrowers).
            sid, _ = create_staff(self.ctx, username=f"sim-collector-{k:02d}", password=None,
                                  role="collector", display_name=f"模拟催收员 {k:02d}",
                                  badge_number=f"SIM-{k:03d}", staff_id=f"sim-c{k:02d}",
                                  languages="zh-Hans,zh-Hant,en")
            self.collectors.append(sid)
        keys = self.ctx.keyring
        self.number_of = {keys.blind_index(ph.number, "phone"): ph.number
                          for b in self.p.borrowers for ph in b.phones}

    def now(self, at: datetime) -> None:
        self.ctx.clock.set(at)

    def morning(self, day: date) -> None:
        from parley.services.daily_run import run_daily
        from parley.services.delinquency import snapshot

        snapshot(self.ctx, day)
        run_daily(self.ctx, day)
        self.sync_plans(day)
        first = local_instant(day, 8, 0, BUSINESS_ZONE)
        self.ticks = [first + WORKER_TICK * k for k in range(28)]  # 08:00 … 21:30

    def record_payments(self, items: list[tuple[str, str, datetime, int]], batch: bool) -> None:
        from parley.services.payments import PaymentRecord, post_payment, post_payments

        if batch:
            with self.ctx.db.transaction() as conn:
                post_payments(self.ctx, conn, [PaymentRecord(pid, loan, at, amount, "CNY", source="sim")
                                               for pid, loan, at, amount in items],
                              self.ctx.clock.now())
        else:
            for pid, loan, at, amount in items:
                post_payment(self.ctx, pid, loan, at, amount, source="sim")

    def call_list(self, day: date) -> list[Task]:
        """The call tasks open in the daily run's queue: today's, and the backlog of tasks
        assigned on earlier days (which holds the collectors' capacity until worked)."""
        from sqlalchemy import text

        self.tp_queued.clear()
        # Ties broken by the item's key, not its id: the two databases number the daily run's
        # rows in different orders, and the simulated day must not depend on which one ran.
        with self.ctx.db.read() as conn:
            rows = conn.execute(text(
                "SELECT id, loan_id, priority FROM contact_queue WHERE business_date <= :d "
                "AND channel = 'call' AND status = 'pending' AND loan_id IS NOT NULL "
                "ORDER BY priority, business_date, idempotency_key"), {"d": day}).all()
        out = []
        for item_id, loan_id, prio in rows:
            ls = self.loans[loan_id]
            out.append(Task(ls.borrower, ls, priority=-int(prio), item=int(item_id)))
        return out

    def wanted(self, task: Task, at: datetime) -> bool:
        ls = task.loan
        return ls.plan is None and ls.overdue(self.today) > 0 and not self.state[task.borrower.id].holds

    def pick_number(self, task: Task) -> str | None:
        """The first number not known to be wrong (as `start_call` picks it); an ad-hoc
        call tries the next one on each attempt."""
        st = self.state[task.borrower.id]
        ok = [p.number for p in task.borrower.phones if p.number not in st.known_invalid]
        if not ok:
            return None
        return ok[0] if task.item is not None else ok[task.tries % len(ok)]

    def ask(self, task: Task, req: ContactRequest) -> tuple[Answer | None, Any]:
        from parley.services.permits import PermitRequest, request_permit

        cid = self.collectors[self.agent % len(self.collectors)]
        if task.item is not None:
            return self._start_call(task, req, cid)
        tp_id = self.tp_ids[(task.borrower.id, task.tp)] if task.tp else None
        permit = request_permit(self.ctx, PermitRequest(
            borrower_id=task.borrower.id, channel="call", purpose=str(req.purpose),
            loan_id=task.loan.loan.id, to=req.to, third_party_id=tp_id,
            collector_id=cid, badge=f"SIM-{self.agent + 1:03d}"))
        return Answer.of(permit.decision), ("permit", permit.attempt_id, cid)

    def _start_call(self, task: Task, req: ContactRequest, cid: str) -> tuple[Answer, Any]:
        from parley.adapters.crypto import mask_phone
        from parley.errors import Conflict, InvalidInput, NotFound
        from parley.services.worker import start_call

        try:
            start = start_call(self.ctx, task.item, cid)
        except (Conflict, NotFound, InvalidInput):
            return Answer(False, dropped=True), None
        if not start.allowed:
            return Answer(False, start.rules, start.next_allowed_at), None
        if start.to_masked != mask_phone(req.to):
            raise RuntimeError(f"start_call dialled {start.to_masked}, the simulator expected "
                               f"{mask_phone(req.to)}")
        return Answer(True), ("queue", start.attempt_id, cid, task.item)

    def outcome(self, handle: Any, result: CallResult, at: datetime) -> None:
        self.last_status = ""
        if handle is None:
            return
        if handle[0] == "queue":
            from parley.services.worker import log_call_outcome

            self.last_status = log_call_outcome(
                self.ctx, handle[3], handle[1], str(result), by=handle[2],
                recording_ref=f"sim-recording-{handle[1]}")
        else:
            from parley.services.permits import record_outcome

            record_outcome(self.ctx, handle[1], str(result), by=handle[2])

    def follow_up(self, task: Task, result: CallResult, at: datetime,
                  push: Callable[[Task, datetime], None]) -> None:
        if task.tp or result in (CallResult.CONVERSATION, CallResult.REFUSED):
            return
        b = task.borrower
        st = self.state[b.id]
        if result is CallResult.WRONG_PARTY:
            st.known_invalid.add(task.last_to)  # record_outcome marks it invalid too
        if self.pick_number(task) is not None and task.tries < 2:
            if result is CallResult.WRONG_PARTY:  # try the next number on file
                push(Task(b, task.loan, tries=task.tries + 1, priority=task.priority),
                     at + timedelta(minutes=5))
            elif task.item is None or self.last_status == "pending":
                push(task, at + timedelta(minutes=120))
        failed = 0
        for r in reversed(st.history):
            if r.role is not Role.BORROWER:
                continue
            if r.result in (CallResult.NO_ANSWER, CallResult.VOICEMAIL, CallResult.NOT_CONNECTED,
                            CallResult.WRONG_PARTY):
                failed += 1
                continue
            break
        if (failed >= 3 or self.pick_number(task) is None) and b.id not in self.tp_queued:
            for t in b.third_parties:
                if t.index not in st.tp_refused_at:
                    self.tp_queued.add(b.id)
                    push(Task(b, task.loan, tp=t.index, priority=task.priority),
                         at + timedelta(minutes=30))
                    break

    def record_complaint(self, task: Task, wrongs_found: tuple[str, ...], at: datetime) -> None:
        """Filed through the complaints service as the borrower; where the pack says so the
        service puts a complaint-investigation hold on collection, which the gate honours."""
        from sqlalchemy import text

        from parley.services.auth import Actor
        from parley.services.complaints import file_complaint

        b = task.borrower
        category = ("contact_after_agreement" if "contacts_after_agreement" in wrongs_found else
                    "third_party_contact" if "third_party_disclosures" in wrongs_found else
                    "harassment")
        self.now(at)
        file_complaint(self.ctx, Actor("borrower", b.id, "borrower"), category=category,
                           description="(simulated) the borrower complains about a collection call",
                           loan_id=task.loan.loan.id)
        self.used_complaints = True
        with self.ctx.db.read() as conn:
            held = conn.execute(text(
                "SELECT 1 FROM hold WHERE borrower_id = :b AND kind = 'complaint_investigation' "
                "AND ended_at IS NULL"), {"b": b.id}).first()
        st = self.state[b.id]
        if held is not None and not any(h.kind is HoldKind.COMPLAINT_INVESTIGATION for h in st.holds):
            st.holds.append(Hold(HoldKind.COMPLAINT_INVESTIGATION, None, at))
            st.hold_known_at.append(at)

    # -- the worker: SMS and e-mail from the daily run's queue ---------------------------------
    def tick_until(self, at: datetime) -> None:
        from sqlalchemy import bindparam, text

        from parley.services.worker import work_once
        from parley.store.types import UTCDateTime

        channels = {"sms": self.provider, "email": self.provider}
        # :now typed as the column is: an untyped datetime reached SQLite as '… 10:00:00+00:00',
        # which sorts before the stored '… 10:00:00.000000', so an item due exactly at a tick
        # waited for the next one (half an hour late, and only on SQLite).
        due = text("SELECT 1 FROM contact_queue WHERE status IN ('pending', 'leased') "
                   "AND channel IN ('sms', 'email') AND not_before <= :now LIMIT 1"
                   ).bindparams(bindparam("now", type_=UTCDateTime()))
        while self.ticks and self.ticks[0] <= at:
            tick = self.ticks.pop(0)
            self.now(tick)
            with self.ctx.db.read() as conn:
                if conn.execute(due, {"now": tick}).first() is None:
                    continue  # nothing due: the worker would lease nothing
            for _ in range(100):
                if work_once(self.ctx, "sim-worker", 500, channels=channels).leased < 500:
                    break
            self._judge_sent(tick)
        self.now(at)

    def _judge_sent(self, tick: datetime) -> None:
        """Every message the worker sent, on the record and judged like any call.

        All of a pass's messages are judged before anyone reacts to them: they went out
        together, so a complaint about the first one (and the complaint-investigation hold it
        brings) comes after the second was sent, not before it."""
        from dataclasses import replace as _replace

        from sqlalchemy import select

        from parley.services.facts import screener
        from parley.store.models.contacts import ContactAttempt

        sent, self.provider.sent = self.provider.sent, []
        ids = [int(m.reference) for m in sent if m.reference.isdigit()]
        if not ids:
            return
        ca = ContactAttempt.__table__.c
        with self.ctx.db.read() as conn:
            rows = {int(r[0]): r for r in conn.execute(select(
                ca.id, ca.borrower_id, ca.loan_id, ca.at, ca.to_index, ca.purpose, ca.channel)
                .where(ca.id.in_(ids)))}
        judged: list[tuple[Task, tuple[str, ...], Decision, datetime, str]] = []
        for m in sent:
            row = rows.get(int(m.reference)) if m.reference.isdigit() else None
            if row is None:
                continue
            _id, bid, loan_id, at, to_index, purpose, channel = row
            ls = self.loan_of[bid]
            to = self.number_of.get(to_index, m.to)  # e-mail: the address itself
            req = ContactRequest(at, Channel(channel), bid, Role.BORROWER, to, Purpose(purpose),
                                 loan_id, text=m.body)
            facts = _replace(self.facts(ls.borrower, 0, at), content=screener().screen(m.body))
            verdict = decide(req, facts, self.pack)
            self.remember(self.state[bid], ContactRecord(at, Channel(channel), bid, Role.BORROWER,
                                                         to, loan_id, None, Purpose(purpose)))
            judged.append((Task(ls.borrower, ls), wrongs(verdict, self.pack), verdict, at,
                           str(channel)))
        for task, found, verdict, at, channel in judged:
            self._count(task, None, found, verdict, at, channel=channel)

    def sync_plans(self, day: date) -> None:
        """Follow what the agreements service recorded (the daily run reviews agreements
        before planning): a plan it marked kept or broken ends here too."""
        if not self.plan_ids:
            return
        from sqlalchemy import bindparam, text

        with self.ctx.db.read() as conn:
            rows = conn.execute(text("SELECT id, status FROM agreement WHERE id IN :ids")
                                .bindparams(bindparam("ids", expanding=True)),
                                {"ids": sorted(self.plan_ids)}).all()
        for agreement_id, status in sorted(rows):
            if status in ("kept", "broken", "cancelled"):
                plan = self.plan_ids.pop(agreement_id)
                if plan.status == "active":
                    self.end_plan(plan, "kept" if status == "kept" else "broken", day)

    def record_plan(self, plan: Plan) -> bool:
        """Through the agreements service: the collector proposes the plan the borrower asked
        for and records the borrower's acceptance during the call (with its recording)."""
        from parley.errors import Conflict, InvalidInput
        from parley.services.agreements import accept, propose

        first_due, first_amount, _ = plan.instalments[0]
        try:
            if plan.kind == "promise":
                proposal = propose(self.ctx, plan.loan_id, "promise/arrears",
                                   proposed_by="sim-collector", amount=plan.total,
                                   first_payment_on=first_due)
            else:
                proposal = propose(
                    self.ctx, plan.loan_id, "installment_plan/arrears",
                    proposed_by="sim-collector", amount=first_amount, frequency="fortnightly",
                    first_payment_on=first_due,
                    installments=[(d, a) for d, a, _ in plan.instalments])
            accept(self.ctx, proposal["id"], channel="call", accepted_by="sim-collector",
                   recording_ref=f"sim-recording-{plan.id}")
        except (InvalidInput, Conflict) as exc:
            self.refusals.append(f"{plan.loan_id}: {exc}")
            return False
        self.plan_ids[proposal["id"]] = plan
        return True

    def review_plans(self, day: date) -> None:
        # The agreements service's own daily review decides kept / broken; the simulator
        # follows what it recorded (that is what the gate reads).
        from parley.services.agreements import review_agreements

        review_agreements(self.ctx, day)
        self.sync_plans(day)

    def record_hold(self, b: SimBorrower, kind: HoldKind, at: datetime) -> datetime:
        from parley.services.permits import place_hold

        place_hold(self.ctx, b.id, str(kind), source="borrower",
                   note="simulated borrower request", by="sim-collector")
        return at


# --- the simulation ---------------------------------------------------------------------------

# What ran for real in the Parley run, for the report. Every service is real; only whether a
# complaint was filed depends on the run.
SERVICES: dict[str, str] = {
    "gate": "real: parley.services.permits.request_permit / record_outcome per contact",
    "agreements": "real: parley.services.agreements propose/accept",
    "daily_run": "real: parley.services.daily_run.run_daily",
    "worker": "real: parley.services.worker.work_once",
    "complaints": ("real: parley.services.complaints.file_complaint as the borrower "
                   "(the naive lender has nowhere to complain: counted only)"),
    "payments": "real: parley.services.payments (post_payments / post_payment)",
    "delinquency": "real: parley.services.delinquency.snapshot each morning",
}
NO_COMPLAINTS_FILED = "counted by the simulator only (none filed in this run)"


def services_used(*, complaints_filed: bool) -> dict[str, str]:
    """`SERVICES`, saying so when the Parley run filed no complaint."""
    return dict(SERVICES) if complaints_filed else {**SERVICES, "complaints": NO_COMPLAINTS_FILED}



@dataclass
class SimResult:
    """summary: {"parley": {...}, "naive": {...}} (deterministic for a seed). series: per-day
    data for the report's charts. services: what ran for real. seconds: wall time (not part
    of the summary, so the summary stays identical across runs)."""

    config: SimConfig
    summary: dict[str, Any]
    series: dict[str, Any]
    services: dict[str, str]
    seconds: float = 0.0
    portfolio: Portfolio | None = None


def simulate(config: SimConfig, ctx: Any,
             progress: Callable[[str, int, int], None] | None = None) -> SimResult:
    """Run both configurations over the same portfolio and behaviour. ``ctx`` is a Parley
    Context on an empty, migrated database whose clock is a FixedClock."""
    import time

    t0 = time.perf_counter()
    _check(config)
    portfolio = _portfolio(config)
    tick = progress or (lambda _s, _d, _t: None)
    out = _run_both(config, portfolio, ctx, tick)
    return _result(config, portfolio, [out], BucketScheme.parse(ctx.settings.buckets),
                   time.perf_counter() - t0)


@dataclass
class ShardOutcome:
    """What one shard's runs produced (picklable, sent back from the shard's process)."""

    parley: Stats
    naive: Stats
    complaints_filed: bool


def shard_of(portfolio: Portfolio, shard: int, shards: int) -> Portfolio:
    """Borrowers ``shard``, ``shard + shards``, … of the book (with their loans)."""
    return Portfolio(portfolio.seed, portfolio.start, portfolio.borrowers[shard::shards],
                     portfolio.loans[shard::shards])


def shard_config(config: SimConfig, shard: int, shards: int) -> SimConfig:
    """The configuration of one shard: its share of the borrowers and of the collectors
    (explicit ``agents`` are dealt out; otherwise one per 500 of the shard's borrowers)."""
    from dataclasses import replace

    n = len(range(shard, config.borrowers, shards))
    agents = 0
    if config.agents:
        agents = max(1, config.agents // shards + (1 if shard < config.agents % shards else 0))
    return replace(config, borrowers=n, agents=agents, shards=1)


def simulate_sharded(config: SimConfig, urls: list[str], settings: Any,
                     progress: Callable[[str, int, int], None] | None = None) -> SimResult:
    """The book split by borrower into ``len(urls)`` shards (borrower *i* in shard
    *i mod n*), each simulated in its own process on its own empty database (``urls[k]``,
    migrated here if needed), both runs in each; the statistics are added up.

    Every invariant is per borrower, so shards never interact except through the collectors:
    each shard has its own team (one per 500 of its borrowers, or its share of
    ``config.agents``). The summary is therefore deterministic for (seed, number of shards),
    not equal to the unsharded one. ``settings``: the Settings each shard's Context uses
    (its database URL replaced by the shard's)."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    t0 = time.perf_counter()
    _check(config)
    shards = len(urls)
    if shards < 1:
        from parley.errors import InvalidInput

        raise InvalidInput("at least one database", record="simulate", field="database_url")
    config = replace(config, shards=shards)
    portfolio = _portfolio(config)
    tick = progress or (lambda _s, _d, _t: None)
    # Inherited by the forked shard processes (modules do not pickle; the book is not
    # generated again in each shard).
    _FORKED.update(portfolio=portfolio)
    try:
        if shards == 1:
            outs = [_shard_main(config, 0, 1, urls[0], settings)]
        else:
            # fork: the shard processes inherit the imported modules and the book; nothing
            # in this process has opened a database connection yet.
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=shards, mp_context=ctx) as pool:
                futures = [pool.submit(_shard_main, config, k, shards, urls[k], settings)
                           for k in range(shards)]
                outs = []
                for k, f in enumerate(futures):
                    outs.append(f.result())
                    tick("shards", k + 1, shards)
    finally:
        _FORKED.clear()
    return _result(config, portfolio, outs, BucketScheme.parse(settings.buckets),
                   time.perf_counter() - t0)


_FORKED: dict[str, Any] = {}


def _shard_main(config: SimConfig, shard: int, shards: int, url: str, settings: Any) -> ShardOutcome:
    """One shard, in its own process: its own Context on its own database."""
    from parley.adapters.clock import FixedClock
    from parley.services.context import Context
    from parley.store.db import Database
    from parley.store.migrate import upgrade

    db = Database(url)
    try:
        upgrade(db)
        ctx = Context(db, settings.model_copy(update={"database_url": url}),
                      FixedClock(local_instant(config.start, 0, 0, BUSINESS_ZONE)))
        part = shard_of(_FORKED["portfolio"], shard, shards)
        return _run_both(shard_config(config, shard, shards), part, ctx,
                         lambda _s, _d, _t: None)
    finally:
        db.dispose()


def _check(config: SimConfig) -> None:
    if config.borrowers < 1 or config.days < 1:
        from parley.errors import InvalidInput

        raise InvalidInput("borrowers and days must be at least 1", record="simulate",
                           field="borrowers" if config.borrowers < 1 else "days")


def _portfolio(config: SimConfig) -> Portfolio:
    from parley.sim.portfolio import generate

    return generate(config.borrowers, config.seed, config.start)


def _run_both(config: SimConfig, portfolio: Portfolio, ctx: Any,
              tick: Callable[[str, int, int], None]) -> ShardOutcome:
    """Both runs over ``portfolio``, day by day."""
    from parley.sim.naive import NaiveRun

    buckets = BucketScheme.parse(ctx.settings.buckets)
    end = config.start + timedelta(days=config.days)
    agenda, before = base_agenda(portfolio, end)
    n = len(portfolio.borrowers)
    tick("portfolio", 0, n)
    parley = ParleyRun(portfolio, config, buckets, ctx)
    parley.setup(before, lambda k: tick("portfolio", k, n))
    naive = NaiveRun(portfolio, config, buckets)
    naive.setup(before)
    for d in range(config.days):
        parley.run_day(d, agenda)
        naive.run_day(d, agenda)
        tick("days", d + 1, config.days)
    return ShardOutcome(parley.stats, naive.stats, parley.used_complaints)


def _merge(parts: list[Stats]) -> Stats:
    """The statistics of several shards as one run's (counts added, day by day)."""
    if len(parts) == 1:
        return parts[0]
    out = Stats()
    for s in parts:
        out.counts.update(s.counts)
        out.recovered += s.recovered
        out.by_rule.update(s.by_rule)
        out.denials.update(s.denials)
    for name in ("contacts_by_day", "recovered_by_day", "agreements_by_day"):
        days: list[dict[str, int]] = []
        for s in parts:
            for d, row in enumerate(getattr(s, name)):
                if d == len(days):
                    days.append({})
                for k, v in row.items():
                    days[d][k] = days[d].get(k, 0) + v
        setattr(out, name, days)
    out.violations_by_day = [sum(v) for v in zip(*(s.violations_by_day for s in parts), strict=True)]
    return out


def _result(config: SimConfig, portfolio: Portfolio, outs: list[ShardOutcome],
            buckets: BucketScheme, seconds: float) -> SimResult:
    services = services_used(complaints_filed=any(o.complaints_filed for o in outs))
    parley, naive = _merge([o.parley for o in outs]), _merge([o.naive for o in outs])
    p_sum, n_sum = summarise(parley), summarise(naive)
    p_sum["services"] = services
    summary = {"parley": p_sum, "naive": n_sum}
    shards = max(1, config.shards)
    agents = sum(shard_config(config, k, shards).agent_count for k in range(shards))
    days = [(config.start + timedelta(days=d)).isoformat() for d in range(config.days)]
    series = {"days": days, "buckets": [b.name for b in buckets.buckets],
              "parley": _series(parley), "naive": _series(naive),
              "portfolio": {"borrowers": config.borrowers, "loans": len(portfolio.loans),
                            "where": dict(Counter(b.where for b in portfolio.borrowers)),
                            "profiles": dict(Counter(str(b.profile.kind) for b in portfolio.borrowers)),
                            "agents": agents, "capacity": config.capacity}}
    return SimResult(config, summary, series, services, seconds, portfolio)


def _series(s: Stats) -> dict[str, Any]:
    return {"contacts_by_day": s.contacts_by_day, "recovered_by_day": s.recovered_by_day,
            "agreements_by_day": s.agreements_by_day, "violations_by_day": s.violations_by_day,
            "violations_by_rule": dict(sorted(s.by_rule.items())),
            "denials_by_rule": dict(sorted(s.denials.items()))}
