"""The daily run: every delinquent account, as of a business date, to items in the contact queue.

Set-based from end to end — a handful of SQL statements over temporary tables, the same on
SQLite and PostgreSQL, never a Python loop per account:

1. **agreements** — the agreements service applies payments to agreements and reviews
   kept/broken agreements first, so today's enforcement-off tags are current.
2. **accounts** (``tmp_acct``) — days past due from ``dpd_sql`` (the same query as the
   snapshot), the balance, broken promises and the account tags: ``agreement_active`` when an
   agreement on the loan is accepted/active, ``hold`` when an active hold covers it, plus the
   borrower's own tags; the arm (a stored per-borrower ``experiment_bucket`` through
   ``arm_case``) and the state (``state_case``) are computed in the same ``INSERT … SELECT``.
3. **actions** (``tmp_action``) — the strategies' actions as a small table, already filtered by
   the weekday of ``as_of``; joined to the accounts on (strategy, state), then filtered by
   ``reevaluate_every_days`` and ``max_per_period`` against the queue's history (days before
   ``as_of`` only, so a re-run sees the same history as the first run).
4. **times** (``tmp_run_plan``) — ``not_before`` per (time-zone key, jurisdiction, action): the
   earliest instant on ``as_of`` inside the action's preferred hours *and* the rule pack's
   lawful hours in every candidate zone. Computed in Python once per distinct combination
   (a few dozen), not per account. It is only a proposal: the worker asks the gate at send time.
   Each combination also gets its *tier*, (priority, not_before) numbered in that order. The
   actions and their times make one small table, so each account meets its actions in one
   probe (see ``T_PLAN``).
5. **assignment** — collector tasks (calls, 面谈 invitations, field visits) go to collectors
   by capacity and skill: for each group of tasks with the same (required skills, language,
   bucket, agency), scarcest group first, tasks ranked by (tier, loan) are matched to the
   eligible collectors' free capacity slots, round-robin (``ROW_NUMBER`` on both sides,
   joined on the rank). A group's ranking reads its tasks only up to a cut estimated from
   a sample of every chunk of accounts, and again whole if that proves short
   (``_rank_tasks``).
   Free capacity is the daily capacity less the tasks still open in the
   collector's queue from earlier days, so a backlog is worked before new work arrives. As
   many again as were assigned, the best-ranked of the rest, go to the shared pool for
   collectors who finish early; the others are counted in the report, not queued (no group
   has more queued than a day's whole free capacity). Earlier days' pool tasks nobody took
   expire before the day is planned (``expire_unassigned_tasks``), so their accounts compete
   again. A visit goes to its lead collector, who books the appointment with the partner(s)
   the pack requires.
6. **queue** — ``INSERT INTO contact_queue … SELECT …`` in committed chunks (on PostgreSQL, two
   writer connections at once; see ``_write_chunks_in_parallel``); the key is
   ``as_of|loan|action``, and a chunk that meets a key already there (a re-run) is written
   again ``ON CONFLICT (borrower_id, idempotency_key) DO NOTHING`` (``_insert_chunk``). The contacts are written
   first and the assignment (5) runs after their chunks, so on PostgreSQL it overlaps their
   writing; the collector tasks are the last chunk. Every value written is a
   function of the database before the run and ``as_of`` (no clock), so a run killed after
   any chunk and run again writes exactly the rows a clean run writes, and a second run
   writes none.

Accounts under an active agreement or hold get no state and no action (the strategy's
enforcement-off tags), and once the accounts are loaded they are checked again against the
live agreements and holds, so on PostgreSQL one activated while they loaded gets nothing
either (SQLite's planning transaction reads one snapshot, so there the check finds only what
the load saw). One activated later, while the actions and the plan are computed (a tenth of a
second at a million accounts) or the queue is written and the tasks assigned (about 7 s),
may still get items; the gate refuses them at send time (an agreement cancels only the items
queued before it).
"""

from __future__ import annotations

import time as _time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Column,
    Connection,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    column,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from parley.core.strategy import (
    EMAIL,
    PHONE,
    Action,
    Experiment,
    Strategy,
    experiment_bucket,
    reachable,
)
from parley.errors import InvalidInput
from parley.services import agreements
from parley.services.context import Context
from parley.services.delinquency import dpd_sql
from parley.services.facts import BINDING_AGREEMENT_SQL, NOTICE_WAIT
from parley.services.placements import AGENCY_CHANNEL, LEGAL_CHANNEL
from parley.services.strategy_sql import (
    arm_case,
    bundled_strategy_path,
    load_experiment,
    load_strategy,
    state_case,
)
from parley.services.worker import COLLECTOR_CHANNELS
from parley.store.db import bulk_insert, db_datetime
from parley.store.models.loanbook import Borrower, Loan
from parley.store.types import ID, UTCDateTime, key_string

# How each action kind reaches the borrower: the gate's channel, or a non-contact task.
CHANNEL_OF_KIND = {
    "sms": "sms",
    "email": "email",
    "call": "call",
    "interview": "interview",
    "field_visit": "visit",
    "legal_referral": LEGAL_CHANNEL,
    "agency_placement": AGENCY_CHANNEL,
}
CONTACT_CHANNELS = frozenset({"sms", "email", "call", "interview", "visit"})
# What a borrower can be reached on, as the account's ``reach`` bit set (the rule, what each
# action kind needs, is ``parley.core.strategy.REACH_NEEDED``).
REACH_BITS = {PHONE: 1, EMAIL: 2}
REACH_FULL = sum(REACH_BITS.values())
# Collector tasks (COLLECTOR_CHANNELS, the worker's): worked from a collector's queue, so
# assigned by capacity and skill.
# Queue statuses that do not count as "an action was taken" for re-evaluation and caps.
NOT_TAKEN = ("cancelled", "dropped", "expired")
# A collector task (alias q) still open when the day begins (:day_start): pending, or a call
# started and not yet logged whose lease had not ended by then. It holds back a second task
# of its kind on the loan and takes a slot of its collector's capacity; a lease that ended
# before the day does neither.
OPEN_TASK_SQL = ("q.status IN ('pending', 'leased') "
                 "AND (q.status = 'pending' OR q.lease_until >= :day_start)")


def expire_unassigned_tasks(ctx: Context, as_of: date) -> int:
    """Collector tasks of earlier days that no collector was given and nobody took from the
    pool end as ``expired`` before the day is planned. Left pending, each counted as an action
    taken — so its account got no new task until its re-evaluation came round, and then the
    same top-ranked accounts won the capacity again while the rest waited in a pool that grew
    by every day's overflow. Expired, the account is planned afresh today. Deterministic for
    a re-run: it only touches rows of days before ``as_of``. Assigned tasks stay (a
    collector's backlog is worked before new work). Returns how many expired."""
    with ctx.db.transaction() as conn:
        res = conn.execute(text(
            "UPDATE contact_queue SET status = 'expired', updated_at = :now, "
            "last_reason = 'not assigned on its day; planned again from ' || :day "
            "WHERE status = 'pending' AND collector_id IS NULL "
            f"AND channel IN {_sql_list(COLLECTOR_CHANNELS)} AND business_date < :as_of"
        ).bindparams(bindparam("as_of", type_=Date), bindparam("now", type_=UTCDateTime)),
            {"as_of": as_of, "now": ctx.clock.now(), "day": as_of.isoformat()})
        return max(int(res.rowcount or 0), 0)


def _sql_list(values: Sequence[str]) -> str:
    """``('a', 'b')`` for an IN over constants (a Python tuple's repr breaks with one item)."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"
DEFAULT_CHUNK = 100_000

ProgressFn = Callable[[str, int, int], None]
# The steps ``progress`` is told of, in order; "queue" comes once per chunk written, and
# "assign" between the chunks (the collector tasks are assigned while the contacts are written).
PROGRESS_STEPS = ("agreements", "expire", "arms", "accounts", "actions", "plan", "queue", "assign")


@dataclass(frozen=True)
class RunReport:
    """What one run found and wrote.

    accounts: delinquent loans evaluated (days past due > 0).
    enforcement_off: of those, loans under an active agreement or hold (no action).
    planned: queue items the run wants for ``as_of``; inserted: how many were new (0 on a
        re-run of a completed day).
    by_state: accounts per state (``enforcement_off`` for those with none; ``no_arm`` for
        borrowers added after the experiment's buckets were stored — the next run places them).
    by_channel / by_state_channel: planned items per channel, and per (state, channel).
    by_arm: accounts per strategy arm (one key when there is no experiment).
    tasks_expired: earlier days' collector tasks nobody was given, expired before planning.
    tasks_assigned / tasks_unassigned: collector tasks (calls, 面谈, visits) given to a
        collector, or not; of the unassigned, ``tasks_pooled`` wait in the shared pool and the
        rest are not queued (beyond the day's capacity: their accounts compete again next run).
    unreachable: per channel, actions not planned because the borrower has no valid phone
        (SMS, calls) or no e-mail address (``parley.core.strategy.REACH_NEEDED``).
    """

    as_of: date
    accounts: int
    enforcement_off: int
    planned: int
    inserted: int
    by_state: dict[str, int]
    by_channel: dict[str, int]
    by_state_channel: dict[tuple[str, str], int]
    by_arm: dict[str, int]
    tasks_assigned: int
    tasks_unassigned: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    tasks_expired: int = 0
    tasks_pooled: int = 0
    unreachable: dict[str, int] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        """Items a clean run of the day writes: the plan less the tasks beyond capacity."""
        return self.planned - (self.tasks_unassigned - self.tasks_pooled)


# --------------------------------------------------------------------------------------------
# Temporary tables (per connection; dropped at the start and end of a run)
# --------------------------------------------------------------------------------------------

_TMP = MetaData()


def _tmp(name: str, *cols: Column[Any]) -> Table:
    return Table(name, _TMP, *cols, prefixes=["TEMPORARY"])


# Per-loan tables carry no key while they are filled: a key is indexed after the bulk insert
# (``_index_loans``), and on PostgreSQL, which hash-joins them, only where a range or a probe
# needs it.
# The few loans with an agreement, a hold or a broken promise: one small table, one join.
T_FACTS = _tmp("tmp_run_facts", Column("loan_id", ID), Column("agreement", Integer),
               Column("hold", Integer), Column("broken", Integer))
# Days past due, as the accounts' statement reads them from ``dpd_sql`` (not a table: see
# _load_accounts); the loan's own columns the strategy reads come along (one pass over the
# loans, not a second join to them).
_DPD_LOAN_COLUMNS = ("currency", "product", "agency_id")
_DPD_COLUMNS = (column("loan_id", ID), column("borrower_id", ID), column("dpd", Integer),
                column("bucket", key_string(8)),
                *(column(c, Loan.__table__.c[c].type) for c in _DPD_LOAN_COLUMNS))
T_BAL = _tmp("tmp_run_bal", Column("loan_id", ID), Column("balance", Integer))
# Borrowers who cannot be reached on every channel (see REACH_BITS): usually a few.
T_REACH = _tmp("tmp_run_reach", Column("borrower_id", ID), Column("reach", Integer))
T_ACCT = _tmp(
    "tmp_run_acct",
    Column("loan_id", ID), Column("borrower_id", ID), Column("dpd", Integer),
    Column("bucket", key_string(8)), Column("language", key_string(16)), Column("jurisdiction", key_string(16)),
    Column("zone_key", key_string(400)), Column("agency_id", ID), Column("strategy_id", key_string(64)),
    Column("state", key_string(64)), Column("reach", Integer),
)
T_ACTION = _tmp(
    "tmp_run_action",
    Column("action_id", Integer, primary_key=True), Column("strategy_id", key_string(64)),
    Column("state", key_string(64)), Column("action_key", key_string(64)), Column("kind", key_string(24)),
    Column("channel", key_string(16)), Column("target", key_string(64)), Column("skills", key_string(200)),
    Column("priority", Integer), Column("reeval_from", Date), Column("cap_from", Date),
    Column("cap_count", Integer),
)
# Collector tasks of earlier days still open in an active collector's queue: the loan gets no
# second task of the kind until that one is worked (a backlog would otherwise stack a new call
# on the same loan every re-evaluation, and the collector dial one borrower twice a day). A
# call started and never logged is leased with a lease that ends; once it has ended before
# the day begins, it holds nothing back.
T_OPEN = _tmp("tmp_run_open", Column("loan_id", ID), Column("kind", key_string(24)))
T_HIST = _tmp("tmp_run_hist", Column("loan_id", ID), Column("kind", key_string(24)),
              Column("business_date", Date), Column("n", Integer))
# The day's plan per kind of account: each action of a (strategy, state) with its time for a
# (zone key, jurisdiction), on the channels a reach allows — a few dozen rows, so the
# accounts meet their actions and times in one probe each (joining the actions, then the
# times, probed twice per task and cost SQLite three times as long, in the ranking and again
# in the queue write).
T_PLAN = _tmp(
    "tmp_run_plan",
    *(Column(c.name, c.type) for c in T_ACTION.columns),
    Column("zone_key", key_string(400)), Column("jurisdiction", key_string(16)),
    Column("reach", Integer), Column("not_before", UTCDateTime), Column("tier", Integer),
)
# The tasks that could be assigned: ranked within their group, at most the day's free capacity.
T_CALLS = _tmp(
    "tmp_run_calls",
    Column("loan_id", ID), Column("action_id", Integer),
    Column("gid", Integer), Column("grank", Integer), Column("collector_id", ID),
    Column("tier", Integer),
)
T_CSLOT = _tmp("tmp_run_cslot", Column("collector_id", ID), Column("slot_no", Integer),
               Column("used", Integer))
T_ELIG = _tmp("tmp_run_elig", Column("collector_id", ID, primary_key=True))
T_FREE = _tmp("tmp_run_free", Column("collector_id", ID, primary_key=True),
              Column("slot_no", Integer, primary_key=True), Column("rn", Integer, index=True))
_ALL_TMP = (T_FACTS, T_REACH, T_BAL, T_ACCT, T_ACTION, T_HIST, T_OPEN, T_PLAN, T_CALLS,
            T_CSLOT, T_ELIG, T_FREE)


def _drop_tmp(conn: Connection) -> None:
    for t in _ALL_TMP:
        conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))


def _batch_memory(conn: Connection) -> None:
    """Room for the run's million-row hashes and sorts in memory (this transaction only):
    with the default 4 MB work_mem PostgreSQL splits them into batches on disk."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL work_mem = '256MB'"))


def _index_loans(conn: Connection, t: Table, *, everywhere: bool = False) -> None:
    """A unique index on ``loan_id``, built once the table is filled (cheaper than keeping it
    up while inserting): on SQLite, whose nested-loop joins probe it; on PostgreSQL only when
    ``everywhere`` (a range is read by it), since its joins are hash joins."""
    if everywhere or conn.dialect.name == "sqlite":
        conn.execute(text(f"CREATE UNIQUE INDEX ix_{t.name}_loan ON {t.name} (loan_id)"))
    _analyze(conn, t)


def _analyze(conn: Connection, t: Table) -> None:
    # PostgreSQL's autovacuum never analyses temporary tables; without statistics the planner
    # guesses badly on the million-row joins.
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {t.name}"))


# --------------------------------------------------------------------------------------------
# Strategies and experiments
# --------------------------------------------------------------------------------------------


def resolve_strategy(ref: str | Strategy) -> Strategy:
    """A strategy from a bundled name (``default``, ``challenger``) or a YAML file path."""
    if isinstance(ref, Strategy):
        return ref
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_strategy(p)
    bundled = bundled_strategy_path(ref)
    if not bundled.exists():
        raise InvalidInput(f"no strategy {ref!r} (not a bundled name nor a file)",
                           record="daily run", field="strategy")
    return load_strategy(bundled)


def _plan(strategy_ids: Sequence[str | Strategy] | None,
          experiment: Experiment | str | None) -> tuple[list[Strategy], Experiment | None]:
    exp = load_experiment(experiment) if isinstance(experiment, str) else experiment
    refs: list[str | Strategy] = list(strategy_ids or [])
    if exp is not None:
        by_id = {s.id: s for s in (resolve_strategy(r) for r in refs)}
        strategies = [by_id.get(a.strategy) or resolve_strategy(a.strategy) for a in exp.arms]
        for arm, s in zip(exp.arms, strategies, strict=True):
            if s.id != arm.strategy:
                raise InvalidInput(f"arm {arm.strategy!r} loaded strategy {s.id!r}",
                                   record=f"experiment {exp.id}", field="arms")
        return strategies, exp
    strategies = [resolve_strategy(r) for r in (refs or ["default"])]
    if len(strategies) > 1:
        raise InvalidInput("several strategies need an experiment to split accounts between them",
                           record="daily run", field="experiment")
    return strategies, None


def _balance_from_dpd(strategies: Sequence[Strategy]) -> int | None:
    """The fewest days past due at which any state's condition asks for the balance; None when
    none does. Summing instalments is the costly part of loading accounts, and a balance below
    this is never looked at (each such condition also fails on its own days-past-due bound)."""
    lows = [st.condition.dpd_range[0] for s in strategies for st in s.states
            if st.condition.balance_at_least_minor is not None
            or st.condition.balance_at_most_minor is not None]
    return min(lows) if lows else None


# --------------------------------------------------------------------------------------------
# Times: the earliest lawful, preferred instant on as_of
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local(z: ZoneInfo, day: date, minute: int) -> datetime:
    if minute >= 1440:
        return datetime.combine(day + timedelta(days=1), time(0), z).astimezone(UTC)
    return datetime.combine(day, time(minute // 60, minute % 60), z).astimezone(UTC)


def lawful_hours(jurisdiction: str, channel: str, default_jurisdiction: str) -> tuple[int, int]:
    """[start, end) minutes of local time the pack allows for ``channel`` (the intersection of
    its ``local_hours`` rules); (0, 1440) when the pack has none. A jurisdiction with no pack
    gets the default one's; a broken pack raises rather than lend its accounts other hours."""
    from parley.services.gate_check import pack_or_default

    pack = pack_or_default(jurisdiction, default_jurisdiction)
    lo, hi = 0, 1440
    for rule in pack.rules:
        if rule.kind != "local_hours":
            continue
        if channel not in {str(c) for c in rule.params["channels"]}:
            continue
        a: time = rule.params["local_time_at_least"]
        b: time = rule.params["local_time_before"]
        lo = max(lo, a.hour * 60 + a.minute)
        hi = min(hi, b.hour * 60 + b.minute)
    return lo, hi


def proposed_time(as_of: date, zones: Sequence[str], windows: Sequence[tuple[int, int]],
                  lawful: tuple[int, int], business_zone: ZoneInfo) -> datetime:
    """The earliest instant on ``as_of`` (local day of the first zone) that is inside one of the
    preferred ``windows`` and the ``lawful`` hours in every zone; failing a preferred window,
    the earliest lawful instant; failing that (unknown zone, no overlap), the start of
    ``as_of`` in the lender's zone, where the gate will decide at send time."""
    zs = [z for z in (_zone(n) for n in zones) if z is not None]
    if not zs:
        return _local(business_zone, as_of, 0)
    lo, hi = lawful

    def fits(t: datetime, need_window: bool) -> bool:
        if t.astimezone(zs[0]).date() != as_of:
            return False
        for z in zs:
            loc = t.astimezone(z)
            m = loc.hour * 60 + loc.minute
            if not (lo <= m < hi):
                return False
            if need_window and windows and not any(a <= m < b for a, b in windows):
                return False
        return True

    candidates = sorted({_local(z, as_of, m) for z in zs
                         for m in [lo, *(a for a, _ in windows)] if m < 1440})
    for need_window in (True, False):
        for t in candidates:
            if fits(t, need_window):
                return t
    return _local(business_zone, as_of, 0)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def ensure_arm_buckets(ctx: Context, seed: str) -> int:
    """Store ``experiment_bucket(seed, borrower_id)`` for every borrower that has none yet
    (new borrowers only; the value never changes for a seed). Returns how many were added."""
    with ctx.db.transaction() as conn:
        missing = conn.execute(text(
            "SELECT b.id FROM borrower b WHERE NOT EXISTS (SELECT 1 FROM borrower_arm a "
            "WHERE a.seed = :seed AND a.borrower_id = b.id)"), {"seed": seed}).scalars()
        return bulk_insert(conn, "borrower_arm", ("seed", "borrower_id", "bucket"),
                           ((seed, bid, experiment_bucket(seed, bid)) for bid in missing))


def run_daily(
    ctx: Context,
    as_of: date,
    strategy_ids: Sequence[str | Strategy] | None = None,
    experiment: Experiment | str | None = None,
    progress: ProgressFn | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    fault: Callable[[str], None] | None = None,
) -> RunReport:
    """Plan ``as_of``: see the module docstring. ``strategy_ids``: bundled names or YAML paths
    (default ``["default"]``); with ``experiment`` (an ``Experiment`` or a YAML path) the arms'
    strategies split borrowers by their stored bucket. ``progress(step, done, total)`` is
    called as the run moves on. ``fault(step)`` is a test hook called after each committed
    step (raise in it to simulate a crash)."""
    if chunk_size < 1:
        raise InvalidInput("must be at least 1", record="daily run", field="chunk_size")
    started = _time.perf_counter()
    timings: dict[str, float] = {}
    tick = [started]

    def step(name: str, done: int = 1, total: int = 1) -> None:
        now = _time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - tick[0]
        tick[0] = now
        if progress is not None:
            progress(name, done, total)

    def crash_point(name: str) -> None:
        if fault is not None:
            fault(name)

    strategies, exp = _plan(strategy_ids, experiment)
    # Today's payments and kept / broken plans first, so the enforcement-off tags are current.
    agreements.apply_payments_to_agreements(ctx, as_of)
    agreements.review_agreements(ctx, as_of)
    step("agreements")
    expired = expire_unassigned_tasks(ctx, as_of)
    step("expire")
    if exp is not None:
        ensure_arm_buckets(ctx, exp.seed)
        step("arms")

    with ctx.db.engine.connect() as conn:
        try:
            conn.execution_options(parley_write=False)
            with conn.begin():
                _batch_memory(conn)
                _drop_tmp(conn)
                for t in _ALL_TMP:
                    t.create(conn)
                _load_accounts(ctx, conn, as_of, strategies, exp)
                _recheck_off(ctx, conn, as_of)
                profile = _AccountProfile.read(conn)
                n_acct = profile.accounts
                step("accounts")
                _load_actions(ctx, conn, as_of, strategies, profile)
                step("actions")
                due = _due_sql(conn)
                per_state = profile.per_state
                state_counts: Counter[str] = Counter()
                arm_counts: Counter[str] = Counter()
                for sid, st, _reach, n in per_state:
                    state_counts["no_arm" if sid is None else (st or "")] += n
                    arm_counts["no_arm" if sid is None else str(sid)] += n
                by_state_rows = list(state_counts.items())
                by_arm_rows = list(arm_counts.items())
                actions = [(str(sid), str(st), str(kind), str(ch)) for sid, st, kind, ch in
                           conn.execute(text("SELECT strategy_id, state, kind, channel "
                                             f"FROM {T_ACTION.name}")).all()]
                reachable_counts, unreachable = _count_by_reach(per_state, actions)
                by_sc_rows = _planned_counts(conn, due, reachable_counts)
                planned = sum(int(r[2]) for r in by_sc_rows)
                chunks = _Chunks(_chunk_bounds(conn, chunk_size), chunk_size,
                                 profile.planned_accounts)
                step("plan")
            crash_point("planned")
            tasks = sum(int(n) for _, ch, n in by_sc_rows if ch in COLLECTOR_CHANNELS)
            outcome = (0, 0)

            def assign() -> None:
                # after the contacts are queued or staged: on PostgreSQL the writers write them
                # meanwhile (nothing here reads today's queue rows)
                nonlocal outcome
                with conn.begin():
                    _batch_memory(conn)
                    outcome = (_assign_tasks(conn, due, as_of, _local(ctx.business_zone, as_of, 0),
                                             profile, chunks) if tasks else (0, 0))
                step("assign")

            inserted = _write_queue(ctx, conn, as_of, exp, due, chunks.bounds, assign, step,
                                    crash_point)
            assigned, pooled = outcome
            unassigned = tasks - assigned
        finally:
            if conn.in_transaction():
                conn.rollback()
            with conn.begin():
                _drop_tmp(conn)

    by_state = {(s or "enforcement_off"): int(n) for s, n in by_state_rows}
    by_sc = {(str(s), str(c)): int(n) for s, c, n in by_sc_rows}
    by_channel: Counter[str] = Counter()
    for (_, c), n in by_sc.items():
        by_channel[c] += n
    return RunReport(
        as_of=as_of, accounts=n_acct, enforcement_off=by_state.get("enforcement_off", 0),
        planned=planned, inserted=inserted, by_state=dict(sorted(by_state.items())),
        by_channel=dict(sorted(by_channel.items())), by_state_channel=dict(sorted(by_sc.items())),
        by_arm={str(a): int(n) for a, n in by_arm_rows}, tasks_assigned=assigned,
        tasks_unassigned=unassigned, seconds=_time.perf_counter() - started,
        timings=timings, tasks_expired=expired, tasks_pooled=pooled, unreachable=unreachable)


def _tags_expr(conn: Connection, b: Table) -> ColumnElement[Any]:
    """',' + the borrower's own tags + ',' — the strategy's tag column; NULL for a borrower
    without tags (most of them), which every tag test reads as "no tags" at once instead of
    building the text and scanning it for each test."""
    trim = "trim" if conn.dialect.name == "sqlite" else "btrim"
    return case((b.c.tags != "", literal(",") + getattr(func, trim)(b.c.tags, ",") + literal(",")),
                else_=None)


def _tag_flags(facts: Table | None) -> dict[str, ColumnElement[bool]]:
    """The account tags the run derives (an agreement, a hold), as flags: each test of one is a
    comparison, where spelling them into the tag text built the text again for every test.
    ``facts`` None: no loan has either."""
    if facts is None:
        return {"agreement_active": false(), "hold": false()}
    return {"agreement_active": func.coalesce(facts.c.agreement, 0) == 1,
            "hold": func.coalesce(facts.c.hold, 0) == 1}


def _load_accounts(ctx: Context, conn: Connection, as_of: date, strategies: Sequence[Strategy],
                   exp: Experiment | None) -> None:
    ap = {"as_of": as_of}
    # Loans switched off — an accepted/active agreement on the loan, or an active hold covering
    # it (borrower-wide or on this loan) — and broken promises per loan. Small sets, kept
    # apart so the big join stays cheap, and not joined at all when there are none.
    n_facts = conn.execute(text(
        f"INSERT INTO {T_FACTS.name} (loan_id, agreement, hold, broken) "
        "SELECT loan_id, MAX(agreement), MAX(hold), SUM(broken) FROM ("
        "  SELECT a.loan_id AS loan_id, 1 AS agreement, 0 AS hold, 0 AS broken FROM agreement a "
        f"  WHERE {BINDING_AGREEMENT_SQL} "
        "  UNION ALL "
        "  SELECT l.id, 0, 1, 0 FROM hold h JOIN loan l ON l.borrower_id = h.borrower_id "
        "  WHERE h.ended_at IS NULL AND (h.loan_id IS NULL OR h.loan_id = l.id)"
        "  UNION ALL "
        "  SELECT loan_id, 0, 0, 1 FROM agreement WHERE status = 'broken'"
        ") x GROUP BY loan_id"), {"notice_cutoff": _notice_cutoff(ctx, conn, as_of)}).rowcount
    _index_loans(conn, T_FACTS)
    facts = T_FACTS if n_facts else None
    balance_from = _balance_from_dpd(strategies)
    if balance_from is not None:
        # Outstanding: everything due by as_of and unpaid, plus principal not yet due; for the
        # loans whose oldest unpaid instalment is at least balance_from days old (pauses only
        # lower days past due, so this is every loan the condition can reach, and a few more).
        # The loan row's cache answers "oldest unpaid" unless a payment came after as_of.
        # Grouped by the loan's id: SQLite then walks the loans in id order and reads the
        # instalments of those that qualify; grouped by the instalments' column it read every
        # instalment and looked its loan up (1.8 → 1.3 s at a million loans).
        conn.execute(text(
            f"INSERT INTO {T_BAL.name} (loan_id, balance) SELECT l.id, SUM(CASE WHEN i.due_on <= :as_of "
            "THEN i.principal_due + i.interest_due + i.fee_due + i.penalty_due - i.paid_principal "
            "- i.paid_interest - i.paid_fee - i.paid_penalty ELSE i.principal_due - i.paid_principal END) "
            "FROM installment i JOIN loan l ON l.id = i.loan_id "
            "WHERE l.oldest_unpaid_due_on <= :balance_cut OR l.last_paid_off_on > :as_of "
            "GROUP BY l.id"
        ).bindparams(bindparam("as_of", type_=Date), bindparam("balance_cut", type_=Date)),
            {**ap, "balance_cut": as_of - timedelta(days=balance_from)})
    _index_loans(conn, T_BAL)

    # Days past due straight from the loans, in the same statement as the state: a table of
    # them first was a million-row write, index and read more (≈ 0.5 s of 20). On SQLite a
    # LIMIT keeps it a subquery: flattened into the join, the days were counted again at each
    # of the state's twenty tests of them (accounts took 60 % longer).
    fence = " LIMIT -1" if conn.dialect.name == "sqlite" else ""
    d = text(
        f"SELECT dd.loan_id, dd.borrower_id, dd.days_past_due AS dpd, dd.bucket, "
        f"{', '.join(f'dd.{c}' for c in _DPD_LOAN_COLUMNS)} "
        f"FROM ({dpd_sql(conn, ctx.buckets, _DPD_LOAN_COLUMNS, overdue_only=True)}) dd{fence}"
    ).columns(*_DPD_COLUMNS).subquery("d")
    bal, b = T_BAL, Borrower.__table__
    tags = _tags_expr(conn, b)
    flags = _tag_flags(facts)
    cols = {"dpd": d.c.dpd, "bucket": d.c.bucket, "balance_minor": func.coalesce(bal.c.balance, 0),
            "currency": d.c.currency, "product": d.c.product, "risk_score": b.c.risk_score,
            "broken_promises": func.coalesce(facts.c.broken, 0) if facts is not None else literal(0),
            "tags": tags}
    # The borrower's zone key: the declared zone, else the candidate zones of the first valid
    # phone (derived when the phone was stored); '' = unknown (the gate fails closed).
    phone_zones = text(
        "(SELECT p.timezones FROM borrower_phone p WHERE p.borrower_id = borrower.id "
        "AND p.is_valid ORDER BY p.position LIMIT 1)")
    zone_key = func.coalesce(func.nullif(b.c.declared_timezone, ""),
                             literal_column(str(phone_zones)), literal(""))
    # What the borrower can be reached on: everything, unless listed in T_REACH (usually few
    # borrowers, so usually not joined at all). Two anti-joins, which PostgreSQL runs as
    # parallel hash anti-joins (EXISTS in the select list was a probe per borrower: 1.7 s
    # against 0.7 s at a million) — in a CREATE TABLE AS, since it plans no INSERT … SELECT
    # in parallel. SQLite probes its indexes either way (0.6 s).
    short = (
        f"SELECT borrower_id, {REACH_FULL} - SUM(missing) AS reach FROM ("
        f"  SELECT b.id AS borrower_id, {REACH_BITS[PHONE]} AS missing FROM borrower b "
        "   WHERE NOT EXISTS (SELECT 1 FROM borrower_phone p WHERE p.borrower_id = b.id AND p.is_valid)"
        "  UNION ALL "
        f"  SELECT b.id, {REACH_BITS[EMAIL]} FROM borrower b "
        "   WHERE NOT EXISTS (SELECT 1 FROM borrower_email e WHERE e.borrower_id = b.id)"
        ") x GROUP BY borrower_id")
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"DROP TABLE {T_REACH.name}"))
        conn.execute(text(f"CREATE TEMPORARY TABLE {T_REACH.name} AS {short}"))
        n_short = conn.execute(text(f"SELECT COUNT(*) FROM {T_REACH.name}")).scalar_one()
    else:
        n_short = conn.execute(text(
            f"INSERT INTO {T_REACH.name} (borrower_id, reach) {short}")).rowcount
    reach: ColumnElement[Any] = literal(REACH_FULL)
    frm = (d.join(b, b.c.id == d.c.borrower_id)
           .outerjoin(bal, bal.c.loan_id == d.c.loan_id))
    if facts is not None:
        frm = frm.outerjoin(facts, facts.c.loan_id == d.c.loan_id)
    if n_short:
        conn.execute(text(f"CREATE UNIQUE INDEX ix_tmp_run_reach ON {T_REACH.name} (borrower_id)"))
        _analyze(conn, T_REACH)
        frm = frm.outerjoin(T_REACH, T_REACH.c.borrower_id == d.c.borrower_id)
        reach = func.coalesce(T_REACH.c.reach, REACH_FULL)
    if exp is not None:
        arm_t = Table("borrower_arm", MetaData(), Column("seed", String), Column("borrower_id", ID),
                      Column("bucket", Integer))
        frm = frm.outerjoin(arm_t, (arm_t.c.seed == exp.seed) & (arm_t.c.borrower_id == b.c.id))
        strategy_expr: ColumnElement[Any] = arm_case(exp, arm_t.c.bucket)
        state_expr = case(*((strategy_expr == s.id, state_case(s, cols, flags))
                            for s in strategies), else_=None)
    else:
        strategy_expr = literal(strategies[0].id)
        state_expr = state_case(strategies[0], cols, flags)
    # language / bucket / agency: '' rather than NULL, so the task groups join on plain columns
    # (which the planner has statistics for) in the assignment step.
    sel = select(d.c.loan_id, d.c.borrower_id, d.c.dpd, func.coalesce(d.c.bucket, ""),
                 func.coalesce(b.c.preferred_language, ""), b.c.jurisdiction, zone_key,
                 func.coalesce(d.c.agency_id, ""), strategy_expr, state_expr, reach
                 ).select_from(frm)
    conn.execute(insert(T_ACCT).from_select(
        ["loan_id", "borrower_id", "dpd", "bucket", "language", "jurisdiction", "zone_key",
         "agency_id", "strategy_id", "state", "reach"], sel), {**ap, "grace": ctx.settings.grace_days})
    _index_loans(conn, T_ACCT, everywhere=True)
    if conn.dialect.name == "sqlite":
        # The accounts by kind, covering what the ranking reads: the ranking (led by the plan)
        # built it anyway, as an automatic index, and the counts per (strategy, state, reach)
        # walk it in order instead of sorting a million rows (SQLite, a million accounts:
        # index 1.9 s, counts 0.8 s -> 0.05 s, ranking 3.2 -> 1.5 s). PostgreSQL hash-joins.
        conn.execute(text(
            f"CREATE INDEX ix_tmp_run_acct_kind ON {T_ACCT.name} (strategy_id, state, reach, "
            "zone_key, jurisdiction, loan_id, language, bucket, agency_id)"))


def _in_order(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows sorted, NULL first in each column: the same order on either database."""
    return sorted(rows, key=lambda r: tuple((v is not None, v) for v in r))


@dataclass(frozen=True)
class _AccountProfile:
    """What the rest of the plan reads per kind of account rather than per account: the
    accounts per (strategy, state, reach) for the report, and, among those with a state, the
    distinct (zone key, jurisdiction, reach) the times are computed for and the distinct
    (language, bucket, agency) the task groups are made of.

    A NULL state is enforcement off; a NULL strategy a borrower newer than the arm buckets
    (the next run places it)."""

    per_state: _PerState
    times: list[tuple[Any, ...]]
    groups: list[tuple[Any, ...]]

    @classmethod
    def read(cls, conn: Connection) -> _AccountProfile:
        """PostgreSQL answers all three in one hash aggregate over the accounts (three
        statements cost twice as long at a million). SQLite has no hash aggregate: a GROUP BY
        over these eight keys sorts every row (2.4 s), while the counts alone walk the
        accounts' kind index in order and a DISTINCT keeps only the distinct rows, so there
        they are read apart (0.1 s in all)."""
        acct = T_ACCT.name
        if conn.dialect.name == "sqlite":
            return cls(
                [(sid, st, int(reach or 0), int(n)) for sid, st, reach, n in conn.execute(text(
                    f"SELECT strategy_id, state, reach, COUNT(*) FROM {acct} "
                    "GROUP BY strategy_id, state, reach"))],
                *(_in_order(tuple(r) for r in conn.execute(text(
                    f"SELECT DISTINCT {cols} FROM {acct} WHERE state IS NOT NULL")))
                  for cols in ("zone_key, jurisdiction, reach", "language, bucket, agency_id")))
        keys = "strategy_id, state, zone_key, jurisdiction, reach, language, bucket, agency_id"
        rows = conn.execute(text(f"SELECT {keys}, COUNT(*) FROM {acct} GROUP BY {keys}")).all()
        per_state: Counter[tuple[str | None, str | None, int]] = Counter()
        for r in rows:
            per_state[(r[0], r[1], int(r[4] or 0))] += int(r[8])
        return cls([(*k, n) for k, n in per_state.items()],
                   _in_order({(r[2], r[3], r[4]) for r in rows if r[1] is not None}),
                   _in_order({(r[5], r[6], r[7]) for r in rows if r[1] is not None}))

    @property
    def accounts(self) -> int:
        return sum(n for *_, n in self.per_state)

    @property
    def planned_accounts(self) -> int:
        """Those with a state, which the plan and the queue's chunks read."""
        return sum(n for _sid, st, _reach, n in self.per_state if st is not None)


def _action_rows(as_of: date, strategies: Sequence[Strategy]) -> list[dict[str, Any]]:
    """One row per action due on the weekday of ``as_of``; ``action_key`` is the kind, with
    ``#n`` when a state has several actions of one kind, so keys are stable per state."""
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[as_of.weekday()]
    rows: list[dict[str, Any]] = []
    for s in strategies:
        for st in s.states:
            seen: Counter[str] = Counter()
            for a in sorted(st.actions, key=lambda x: x.priority):
                seen[a.kind] += 1
                if weekday not in a.timing.days_of_week:
                    continue
                key = a.kind if seen[a.kind] == 1 else f"{a.kind}#{seen[a.kind]}"
                t = a.timing
                rows.append({
                    "action_id": len(rows) + 1, "strategy_id": s.id, "state": st.name,
                    "action_key": key, "kind": a.kind, "channel": CHANNEL_OF_KIND[a.kind],
                    "target": _target(a), "skills": ",".join(sorted(a.required_skills)),
                    "priority": a.priority,
                    # not due when an earlier action of the kind is on or after reeval_from
                    "reeval_from": (as_of - timedelta(days=t.reevaluate_every_days - 1)
                                    if t.reevaluate_every_days else None),
                    "cap_from": (as_of - timedelta(days=t.max_per_period.days - 1)
                                 if t.max_per_period else None),
                    "cap_count": t.max_per_period.count if t.max_per_period else None,
                    "_windows": tuple((w.start_minute, w.end_minute) for w in t.preferred_hours),
                })
    return rows


def reaches(reach: int, kind: str) -> bool:
    """Whether an account with ``reach`` (``REACH_BITS``) can be given an action of ``kind``:
    the core's rule, read off the bits."""
    return reachable(kind, frozenset(c for c, bit in REACH_BITS.items() if reach & bit))


def _target(a: Action) -> str:
    """What the queue's template_id column carries for the kind (see docs/daily-run.md)."""
    if a.kind in ("sms", "email"):
        return a.template or ""
    if a.kind == "interview":
        return f"interview_{a.mode}"
    if a.kind == "field_visit":
        return f"field_visit:{a.collectors_required or 2}"
    if a.kind == "agency_placement":
        return a.agency or ""
    return a.queue or ""


def _load_actions(ctx: Context, conn: Connection, as_of: date, strategies: Sequence[Strategy],
                  profile: _AccountProfile) -> None:
    rows = _action_rows(as_of, strategies)
    if rows:
        conn.execute(insert(T_ACTION), [{k: v for k, v in r.items() if k != "_windows"} for r in rows])
    froms = [r[k] for r in rows for k in ("reeval_from", "cap_from") if r[k] is not None]
    if froms:
        conn.execute(text(
            f"INSERT INTO {T_HIST.name} (loan_id, kind, business_date, n) "
            "SELECT q.loan_id, q.action_kind, q.business_date, COUNT(*) FROM contact_queue q "
            f"WHERE q.business_date >= :since AND q.business_date < :as_of "
            f"AND q.status NOT IN {_sql_list(NOT_TAKEN)} GROUP BY q.loan_id, q.action_kind, q.business_date"
        ).bindparams(bindparam("since", type_=Date), bindparam("as_of", type_=Date)),
            {"since": min(froms), "as_of": as_of})
        conn.execute(text(f"CREATE INDEX ix_tmp_run_hist ON {T_HIST.name} (loan_id, kind)"))
        _analyze(conn, T_HIST)
    # read through the collector index (collector_id, status), not the whole queue
    conn.execute(text(
        f"INSERT INTO {T_OPEN.name} (loan_id, kind) SELECT DISTINCT q.loan_id, q.action_kind "
        "FROM contact_queue q JOIN staff_user u ON u.id = q.collector_id AND u.active "
        f"WHERE q.collector_id IS NOT NULL AND {OPEN_TASK_SQL} "
        "AND q.business_date < :as_of AND q.loan_id IS NOT NULL"
    ).bindparams(bindparam("as_of", type_=Date), bindparam("day_start", type_=UTCDateTime)),
        {"as_of": as_of, "day_start": _local(ctx.business_zone, as_of, 0)})
    conn.execute(text(f"CREATE INDEX ix_tmp_run_open ON {T_OPEN.name} (loan_id, kind)"))
    _analyze(conn, T_OPEN)
    # The plan: every action with its not_before per distinct (zone key, jurisdiction, reach),
    # on the channels that reach allows.
    combos = profile.times
    default_j = ctx.settings.default_jurisdiction
    plan = []
    for zone_key, jurisdiction, reach in combos:
        zones = tuple(z.strip() for z in (zone_key or "").split(",") if z.strip())
        for r in rows:
            if not reaches(reach, r["kind"]):
                continue
            if r["channel"] in CONTACT_CHANNELS:
                lawful = lawful_hours(jurisdiction or default_j, r["channel"], default_j)
                nb = proposed_time(as_of, zones, r["_windows"], lawful, ctx.business_zone)
            else:  # a referral or placement is not a contact: due from the start of the day
                nb = _local(ctx.business_zone, as_of, 0)
            plan.append({**{c.name: r[c.name] for c in T_ACTION.columns}, "zone_key": zone_key,
                         "jurisdiction": jurisdiction, "reach": reach, "not_before": nb,
                         "tier": (r["priority"], nb)})
    # tier: (priority, not_before) as one integer, in that order — how tasks rank, so the
    # ranking sorts a million tasks by an integer and the loan rather than by three keys.
    tiers = {t: k for k, t in enumerate(sorted({p["tier"] for p in plan}))}
    for p in plan:
        p["tier"] = tiers[p["tier"]]
    if plan:
        conn.execute(insert(T_PLAN), plan)
    conn.execute(text(f"CREATE INDEX ix_tmp_run_plan ON {T_PLAN.name} "
                      "(strategy_id, state, zone_key, jurisdiction, reach)"))
    _analyze(conn, T_ACTION)
    _analyze(conn, T_PLAN)


@dataclass(frozen=True, slots=True)
class _Due:
    """The join of accounts to their due actions and times, as FROM and WHERE fragments.

    ``from_by_action`` is the same join led by the plan (its condition then goes in the WHERE:
    ``on``), for the ranking: SQLite then reads the accounts action by action through an index
    it builds, in their stored order, so the rows reach the sort nearly in rank order (led by
    the accounts, the ranking took a second longer at a million). PostgreSQL plans either
    spelling alike."""

    from_: str
    where: str
    on: str

    @property
    def from_by_action(self) -> str:
        return f"FROM {T_PLAN.name} a CROSS JOIN {T_ACCT.name} t"


def _due_sql(conn: Connection) -> _Due:
    """Accounts × the actions of their state at their proposed time, filtered by the history."""
    on = ("a.strategy_id = t.strategy_id AND a.state = t.state AND a.zone_key = t.zone_key "
          "AND a.jurisdiction = t.jurisdiction AND a.reach = t.reach")
    from_ = f"FROM {T_ACCT.name} t JOIN {T_PLAN.name} a ON {on}"
    has_hist = conn.execute(text(f"SELECT 1 FROM {T_HIST.name} LIMIT 1")).first() is not None
    has_open = conn.execute(text(f"SELECT 1 FROM {T_OPEN.name} LIMIT 1")).first() is not None
    if not (has_hist or has_open):  # the first run: nothing to filter (or probe per row)
        return _Due(from_, "1 = 1", on)
    where = (
        f"NOT EXISTS (SELECT 1 FROM {T_OPEN.name} o WHERE o.loan_id = t.loan_id AND o.kind = a.kind) "
        "AND (a.reeval_from IS NULL OR NOT EXISTS (SELECT 1 FROM "
        f"{T_HIST.name} h WHERE h.loan_id = t.loan_id AND h.kind = a.kind "
        "AND h.business_date >= a.reeval_from)) "
        f"AND (a.cap_count IS NULL OR (SELECT COALESCE(SUM(h.n), 0) FROM {T_HIST.name} h "
        "WHERE h.loan_id = t.loan_id AND h.kind = a.kind AND h.business_date >= a.cap_from) < a.cap_count)")
    return _Due(from_, where, on)


_PerState = list[tuple[str | None, str | None, int, int]]  # (strategy, state, reach, accounts)
_Actions = list[tuple[str, str, str, str]]  # (strategy, state, kind, channel)


def _count_by_reach(per_state: _PerState,
                    actions: _Actions) -> tuple[Counter[tuple[str, str]], dict[str, int]]:
    """The accounts' actions before re-evaluation and caps: per (state, channel) those the
    borrowers can be reached for, and per channel those they cannot (no valid phone, no e-mail
    address: the report's ``unreachable``)."""
    reached: Counter[tuple[str, str]] = Counter()
    missed: Counter[str] = Counter()
    for sid, st, kind, ch in actions:
        for a_sid, a_st, reach, n in per_state:
            if (a_sid, a_st) == (sid, st):
                if reaches(reach, kind):
                    reached[(st, ch)] += n
                else:
                    missed[ch] += n
    return reached, dict(sorted(missed.items()))


def _planned_counts(conn: Connection, due: _Due,
                    reached: Counter[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """(state, channel, items) the run plans. Without history to filter by, that is just the
    reachable actions of the accounts (``_count_by_reach``), so the big join is not run twice."""
    if due.where == "1 = 1":
        return [(st, ch, n) for (st, ch), n in sorted(reached.items())]
    rows = conn.execute(text(
        f"SELECT t.state, a.channel, COUNT(*) {due.from_} WHERE {due.where} "
        "GROUP BY t.state, a.channel")).all()
    return [(str(s), str(c), int(n)) for s, c, n in rows]


def _notice_cutoff(ctx: Context, conn: Connection, as_of: date) -> Any:
    """Broken plans whose notice is older than this no longer hold collection back. Counted
    from the start of ``as_of`` in the lender's zone, not from the clock, so the plan is a
    function of the database and the date (a second run later that day plans the same); the
    gate applies the exact window at send time."""
    return db_datetime(conn, _local(ctx.business_zone, as_of, 0) - NOTICE_WAIT)


def _recheck_off(ctx: Context, conn: Connection, as_of: date) -> None:
    """Switch off accounts that came under an agreement or hold while the accounts loaded
    (PostgreSQL; see the module docstring. The tables are small; the gate re-checks at send
    time in any case)."""
    # one IN list of loan ids, so the update is driven by the (small) list through the key
    conn.execute(text(
        f"UPDATE {T_ACCT.name} SET state = NULL WHERE loan_id IN ("
        f"SELECT a.loan_id FROM agreement a WHERE {BINDING_AGREEMENT_SQL} "
        "UNION SELECT h.loan_id FROM hold h WHERE h.ended_at IS NULL AND h.loan_id IS NOT NULL "
        "UNION SELECT l.id FROM hold h JOIN loan l ON l.borrower_id = h.borrower_id "
        "WHERE h.ended_at IS NULL AND h.loan_id IS NULL) AND state IS NOT NULL"),
        {"notice_cutoff": _notice_cutoff(ctx, conn, as_of)})


def _chunk_bounds(conn: Connection, chunk_size: int) -> list[str]:
    """Loan ids splitting the accounts with a state into chunks of ``chunk_size`` accounts:
    each the ``chunk_size``-th after the last."""
    bounds: list[str] = []
    bound = _nth_loan_after(conn, "", chunk_size)  # "" is below every id (ids are non-empty)
    while bound is not None:
        bounds.append(bound)
        bound = _nth_loan_after(conn, bound, chunk_size)
    return bounds


def _nth_loan_after(conn: Connection, after: str, n: int) -> str | None:
    """The loan id of the ``n``-th account with a state after loan ``after``, stepped along the
    loan_id index (numbering every account in a window sorted them all again, four times
    slower); None when fewer are left."""
    return conn.execute(_NTH_LOAN, {"after": after, "skip": n - 1}).scalar()


_NTH_LOAN = text(f"SELECT loan_id FROM {T_ACCT.name} WHERE loan_id > :after AND state IS NOT NULL "
                 "ORDER BY loan_id LIMIT 1 OFFSET :skip")


@dataclass(frozen=True, slots=True)
class _Collector:
    id: str
    agency_id: str
    languages: frozenset[str]
    skills: frozenset[str]
    capacity: int

    def can_take(self, skills: str, language: str, bucket: str, agency: str) -> bool:
        """Eligible for a task group: same agency (or both in-house), speaks the borrower's
        language (by base language: zh-Hans and zh-Hant speak alike), has every required skill
        (``lang:xx`` is implied by the languages), and covers the bucket / queue when it lists
        ``bucket:`` / ``queue:`` skills at all."""
        if self.agency_id != agency:
            return False
        bases = {lang.split("-")[0].lower() for lang in self.languages}
        have = self.skills | {f"lang:{b}" for b in bases} | {f"lang:{lang}" for lang in self.languages}
        if language and language.split("-")[0].lower() not in bases:
            return False
        if any(s not in have for s in skills.split(",") if s):
            return False
        buckets = {s[7:] for s in self.skills if s.startswith("bucket:")}
        return not buckets or bucket in buckets


def _collectors(conn: Connection, as_of: date, day_start: datetime) -> list[_Collector]:
    """Active collectors with their free capacity for ``as_of``: daily capacity less the tasks
    still open in their queue from days before ``as_of`` (``OPEN_TASK_SQL``). Today's own rows
    are not counted, so a re-run of a half-written day assigns exactly as a clean run."""
    open_tasks: dict[str, int] = dict(conn.execute(text(
        "SELECT q.collector_id, COUNT(*) FROM contact_queue q WHERE q.collector_id IS NOT NULL "
        f"AND {OPEN_TASK_SQL} AND q.business_date < :as_of GROUP BY q.collector_id"
    ).bindparams(bindparam("as_of", type_=Date), bindparam("day_start", type_=UTCDateTime)),
        {"as_of": as_of, "day_start": day_start}).all())
    rows = conn.execute(text(
        "SELECT id, COALESCE(agency_id, ''), languages, skills, daily_capacity FROM staff_user "
        "WHERE active AND role IN ('collector', 'agency_collector') AND daily_capacity > 0 "
        "ORDER BY id")).all()
    out = []
    for r in rows:
        free = int(r[4]) - int(open_tasks.get(r[0], 0))
        if free > 0:
            out.append(_Collector(
                r[0], r[1], frozenset(x.strip() for x in (r[2] or "").split(",") if x.strip()),
                frozenset(x.strip() for x in (r[3] or "").split(",") if x.strip()), free))
    return out


@dataclass(frozen=True)
class _TaskGroups:
    """Collector tasks alike in what a collector needs to take them — (skills, language,
    bucket, agency) — numbered by one integer in mixed radix, so the ranking window partitions
    by an integer: over the four text keys, nearly all tied, it sorted several times slower
    (and a GROUP BY to number them first cost as much again).

    sql: the number as a SQL expression over ``a`` (actions) and ``t`` (accounts), with its
    bound values in ``params``; ``key(n)`` turns a number back into the four values."""

    sql: str
    params: dict[str, str]
    values: tuple[tuple[str, ...], ...]  # skills, languages, buckets, agencies; each sorted

    def key(self, n: int) -> tuple[str, str, str, str]:
        digits = []
        for vals in reversed(self.values):
            n, d = divmod(n, len(vals))
            digits.append(vals[d])
        skills, language, bucket, agency = reversed(digits)
        return skills, language, bucket, agency


def _task_groups(conn: Connection, profile: _AccountProfile) -> _TaskGroups | None:
    skills = conn.execute(text(
        f"SELECT DISTINCT skills FROM {T_ACTION.name} WHERE channel IN {_sql_list(COLLECTOR_CHANNELS)}"
    )).scalars().all()
    profiles = profile.groups
    if not skills or not profiles:
        return None
    values = (tuple(sorted(skills)), tuple(sorted({p[0] for p in profiles})),
              tuple(sorted({p[1] for p in profiles})), tuple(sorted({p[2] for p in profiles})))
    params: dict[str, str] = {}
    expr = "0"
    for name, (col, vals) in zip("slba", zip(("a.skills", "t.language", "t.bucket", "t.agency_id"),
                                             values, strict=True), strict=True):
        whens = []
        for i, v in enumerate(vals):
            params[f"g{name}{i}"] = v
            whens.append(f"WHEN :g{name}{i} THEN {i}")
        expr = f"({expr}) * {len(vals)} + (CASE {col} {' '.join(whens)} END)"
    return _TaskGroups(expr, params, values)


@dataclass(frozen=True, slots=True)
class _Chunks:
    """How the queue write splits the accounts with a state: ``bounds[k]`` is the last loan
    id of chunk k, each chunk ``size`` accounts, ``accounts`` in all."""

    bounds: Sequence[str]
    size: int
    accounts: int


# How far past the day's capacity the sample's estimate reaches before a group's ranking is
# cut (see _rank_cuts). Every task past the capacity is sorted for nothing; a cut that proves
# too short costs its group a second ranking. Counting alone errs by about 2 % at a million
# (a group's tier holds thousands of the sample's 100,000 accounts); the rest is for loans
# unlike the sampled ones (other history, another mix).
RANK_MARGIN = 1.1


def _rank_tasks(conn: Connection, due: _Due, groups: _TaskGroups, cap: int, chunks: _Chunks) -> None:
    """Fill ``tmp_run_calls`` with every group's ``cap`` best tasks (``grank`` 1..cap, by
    tier, loan and action). A task ranked past the day's whole free capacity in its own group
    would not be reached even if every collector worked only that group, so it is neither
    assigned nor pooled, and not kept.

    At a million accounts most tasks rank far past that, and sorting them all to number the
    first ``cap`` was the run's longest step. So each group's ranking reads only a prefix of
    its tasks in rank order, ending at a cut (tier, loan) from ``_rank_cuts``; a group whose
    prefix then holds fewer than ``cap`` tasks, where the cut's estimate was wrong, is ranked
    again without one. A prefix holding ``cap`` tasks ranks them exactly as the whole group
    would, so the cut changes how much is sorted, never the result."""
    cuts = _rank_cuts(conn, due, groups, cap, chunks)
    _rank_groups(conn, due, groups, cap, cuts)
    if not cuts:
        return
    kept = {int(g): int(n) for g, n in conn.execute(text(
        f"SELECT gid, COUNT(*) FROM {T_CALLS.name} GROUP BY gid"))}
    short = sorted(g for g in cuts if kept.get(g, 0) < cap)
    if short:
        conn.execute(text(f"DELETE FROM {T_CALLS.name} WHERE gid IN ({', '.join(map(str, short))})"))
        _rank_groups(conn, due, groups, cap, {}, only=short)


def _rank_groups(conn: Connection, due: _Due, groups: _TaskGroups, cap: int,
                 cuts: dict[int, tuple[int, str | None]], only: Sequence[int] = ()) -> None:
    """The ranking itself: every group's tasks up to its cut (``cuts``: gid → last tier, and
    last loan within that tier or None for all of it), or those of the ``only`` groups."""
    params: dict[str, Any] = {**groups.params, "cap": cap}
    keep = "1 = 1"
    if cuts:
        whens = []
        for k, (gid, (tier, loan)) in enumerate(sorted(cuts.items())):
            params[f"rt{k}"] = tier
            if loan is None:
                whens.append(f"WHEN {gid} THEN x.tier <= :rt{k}")
            else:
                params[f"rl{k}"] = loan
                whens.append(f"WHEN {gid} THEN (x.tier < :rt{k} OR (x.tier = :rt{k} "
                             f"AND x.loan_id <= :rl{k}))")
        keep = f"CASE x.gid {' '.join(whens)} ELSE 1 = 1 END"
    if only:
        keep = f"x.gid IN ({', '.join(map(str, only))})"
    conn.execute(text(
        f"INSERT INTO {T_CALLS.name} (loan_id, action_id, gid, grank, collector_id, tier) "
        "SELECT loan_id, action_id, gid, grank, NULL, tier FROM ("
        "SELECT loan_id, action_id, gid, tier, "
        "ROW_NUMBER() OVER (PARTITION BY gid ORDER BY tier, loan_id, action_id) AS grank "
        "FROM (SELECT t.loan_id AS loan_id, "
        f"a.action_id AS action_id, {groups.sql} AS gid, a.tier AS tier {due.from_by_action} "
        f"WHERE {due.on} AND a.channel IN {_sql_list(COLLECTOR_CHANNELS)} AND {due.where}) x "
        f"WHERE {keep}) y WHERE grank <= :cap"), params)


def _rank_cuts(conn: Connection, due: _Due, groups: _TaskGroups, cap: int,
               chunks: _Chunks) -> dict[int, tuple[int, str | None]]:
    """Where each group's ranking can stop, estimated from a sample: the first tenth of every
    chunk of accounts (index ranges, a tenth of the join), its tasks counted per group, tier
    and chunk, history filters applied, and scaled to the chunk. The cut is the tier at which
    a group's estimate passes ``RANK_MARGIN`` × ``cap``, and within it the bound of the chunk
    by which it does. Sampling every chunk follows a book whose groups are not spread evenly
    over the loan ids (ids sorted by age put the most overdue loans first). Groups the sample
    does not reach, or whose estimate stays under the margin, are not cut. Nothing on a day of
    one or two chunks: the whole ranking is small."""
    if len(chunks.bounds) < 2:
        return {}
    # By upper bound or not: a plain range for the index, no "or no upper bound".
    count = {upto: text(
        f"SELECT {groups.sql}, a.tier, COUNT(*) {due.from_} WHERE t.loan_id > :lo "
        + ("AND t.loan_id <= :hi " if upto else "")
        + f"AND a.channel IN {_sql_list(COLLECTOR_CHANNELS)} AND {due.where} GROUP BY 1, 2")
        for upto in (True, False)}
    per = max(1, chunks.size // 10)
    # est[gid][(tier, chunk)]: the group's tasks of that tier in that chunk
    est: dict[int, dict[tuple[int, int], float]] = {}
    for c, lo in enumerate(["", *chunks.bounds]):  # "" is below every id; the last chunk may be empty
        size = chunks.size if c < len(chunks.bounds) else chunks.accounts - c * chunks.size
        if size <= 0:
            break
        hi = _nth_loan_after(conn, lo, per) if per < size else None
        scale = size / per if hi is not None else 1.0
        for gid, tier, n in conn.execute(count[hi is not None], {**groups.params, "lo": lo, "hi": hi}):
            est.setdefault(int(gid), {})[(int(tier), c)] = int(n) * scale
    want = cap * RANK_MARGIN
    cuts: dict[int, tuple[int, str | None]] = {}
    for gid, counts in est.items():
        running = 0.0
        for (tier, c), n in sorted(counts.items()):  # rank order: tier, then loan
            running += n
            if running >= want:
                cuts[gid] = (tier, chunks.bounds[c] if c < len(chunks.bounds) else None)
                break
    return cuts


def _assign_tasks(conn: Connection, due: _Due, as_of: date, day_start: datetime,
                  profile: _AccountProfile, chunks: _Chunks) -> tuple[int, int]:
    """Give collector tasks to collectors by free capacity and skill; returns how many were
    assigned and how many went to the shared pool. Every task takes one slot of the day's
    capacity."""
    collectors = _collectors(conn, as_of, day_start)
    groups = _task_groups(conn, profile)
    if not collectors or groups is None:
        return 0, 0
    free_total = sum(c.capacity for c in collectors)
    _rank_tasks(conn, due, groups, free_total, chunks)
    conn.execute(text(f"CREATE INDEX ix_tmp_run_calls_group ON {T_CALLS.name} (gid, grank)"))
    _analyze(conn, T_CALLS)
    gids = conn.execute(text(f"SELECT DISTINCT gid FROM {T_CALLS.name}")).scalars().all()
    # a slot per unit of free capacity (30,000 at 500 collectors): COPY on PostgreSQL
    bulk_insert(conn, T_CSLOT.name, ("collector_id", "slot_no", "used"),
                ((c.id, n, 0) for c in collectors for n in range(1, c.capacity + 1)))
    conn.execute(text(f"CREATE INDEX ix_tmp_run_cslot ON {T_CSLOT.name} (collector_id, slot_no)"))
    plan = []
    for gid in gids:
        elig = [c.id for c in collectors if c.can_take(*groups.key(int(gid)))]
        if elig:
            plan.append((len(elig), int(gid), elig))
    plan.sort()  # scarcest group first; ties by the group number, so the result is deterministic
    assigned = 0
    for _, gid, elig in plan:
        if assigned >= free_total:
            break
        for t in (T_ELIG, T_FREE):
            conn.execute(t.delete())
        conn.execute(insert(T_ELIG), [{"collector_id": c} for c in elig])
        conn.execute(text(
            f"INSERT INTO {T_FREE.name} (collector_id, slot_no, rn) SELECT c.collector_id, c.slot_no, "
            "ROW_NUMBER() OVER (ORDER BY c.slot_no, c.collector_id) "
            f"FROM {T_CSLOT.name} c JOIN {T_ELIG.name} e ON e.collector_id = c.collector_id "
            "WHERE c.used = 0"))
        free = int(conn.execute(text(f"SELECT COUNT(*) FROM {T_FREE.name}")).scalar_one())
        if free == 0:
            continue
        # tasks ranked 1..k of the group meet free slots 1..k (k = min(free, tasks))
        k = conn.execute(text(
            f"UPDATE {T_CALLS.name} SET collector_id = f.collector_id FROM {T_FREE.name} f "
            f"WHERE f.rn = {T_CALLS.name}.grank AND {T_CALLS.name}.gid = :g "
            f"AND {T_CALLS.name}.grank <= :free"), {"g": gid, "free": free}).rowcount
        got = conn.execute(text(
            f"UPDATE {T_CSLOT.name} SET used = 1 WHERE used = 0 AND EXISTS (SELECT 1 FROM "
            f"{T_FREE.name} f WHERE f.rn <= :k AND f.collector_id = {T_CSLOT.name}.collector_id "
            f"AND f.slot_no = {T_CSLOT.name}.slot_no)"), {"k": int(k or 0)}).rowcount
        assigned += int(got or 0)
    return assigned, _keep_assigned_and_pool(conn, assigned)


def _keep_assigned_and_pool(conn: Connection, pool: int) -> int:
    """Keep in ``tmp_run_calls`` only the tasks the queue gets: the assigned ones and the
    ``pool`` best-ranked of the rest that are kept (within the day's free capacity in their
    group) — by (priority, not_before, loan, action), whatever their group — as the shared
    pool, for collectors who get through their own list early. The others are counted, not
    queued: at a million accounts and 30,000 slots that was 1.47M rows a day written for
    nobody to work (the next run expired them), 60 % of the queue write and of the table's
    growth. Returns the pool's size (less than ``pool`` when fewer tasks are left)."""
    calls = T_CALLS.name
    key = "tier, loan_id, action_id"  # tier: (priority, not_before)
    if pool == 0:
        conn.execute(text(f"DELETE FROM {calls} WHERE collector_id IS NULL"))
        kept = 0
    else:
        # the last pool task's key ("NOT IN the best n" ran for minutes on SQLite)
        last = conn.execute(text(
            f"SELECT {key} FROM {calls} WHERE collector_id IS NULL ORDER BY {key} "
            "LIMIT 1 OFFSET :skip"), {"skip": pool - 1}).first()
        if last is not None:
            conn.execute(text(f"DELETE FROM {calls} WHERE collector_id IS NULL AND ({key}) > "
                              "(:tier, :loan, :action)"),
                         {"tier": last[0], "loan": last[1], "action": last[2]})
            kept = pool
        else:  # fewer left than the pool holds: all of them
            kept = int(conn.execute(text(
                f"SELECT COUNT(*) FROM {calls} WHERE collector_id IS NULL")).scalar_one())
    conn.execute(text(f"CREATE INDEX ix_tmp_run_calls_key ON {calls} (loan_id, action_id)"))
    _analyze(conn, T_CALLS)
    return kept


_QUEUE_COLS = ("business_date, borrower_id, loan_id, strategy_id, arm, state, action_kind, channel, "
               "purpose, template_id, priority, not_before, status, collector_id, attempts, "
               "idempotency_key, last_reason, created_at, updated_at")


def _write_queue(ctx: Context, conn: Connection, as_of: date, exp: Experiment | None,
                 due: _Due, bounds: Sequence[str], assign: Callable[[], None],
                 step: Callable[[str, int, int], None], crash_point: Callable[[str], None]) -> int:
    """INSERT … SELECT the due actions, each chunk one committed transaction, skipping keys
    already written (a re-run; see ``_insert_chunk``).

    First the contacts and referrals that go to no collector, a chunk of accounts at a time;
    then ``assign()`` gives the collector tasks to collectors; then those tasks, one chunk
    (at most twice the day's free capacity). On PostgreSQL the chunks are written by
    ``WRITERS`` connections at once (see ``_write_chunks_in_parallel``), so the assignment's
    ranking runs on the planning connection while the contacts are written: one core ranked
    while the other waited. SQLite has one writer, so it writes them in turn."""
    now = ctx.clock.now()
    arm_prefix = f"{exp.id}/" if exp is not None else ""

    def rows(collector: str, from_where: str) -> str:
        return ("SELECT :as_of, t.borrower_id, t.loan_id, t.strategy_id, "
                + ("CAST(:arm_prefix AS VARCHAR(64)) || t.strategy_id" if arm_prefix else "''")
                + ", t.state, a.kind, a.channel, 'collection', NULLIF(a.target, ''), a.priority, "
                f"a.not_before, 'pending', {collector}, 0, "
                "CAST(:key_prefix AS VARCHAR(16)) || t.loan_id || '|' || a.action_key, '', :now, :now "
                + from_where)

    contacts = rows("NULL", f"{due.from_} WHERE {due.where} AND t.state IS NOT NULL "
                            f"AND a.channel NOT IN {_sql_list(COLLECTOR_CHANNELS)}")
    # the kept tasks (assigned or pooled) were chosen from the due join: only they are read
    tasks = rows("c.collector_id", f"FROM {T_CALLS.name} c JOIN {T_ACCT.name} t ON t.loan_id = c.loan_id "
                                   f"JOIN {T_PLAN.name} a ON a.action_id = c.action_id AND {due.on} "
                                   "WHERE t.state IS NOT NULL")
    params: dict[str, Any] = {"as_of": as_of, "now": now, "key_prefix": f"{as_of.isoformat()}|",
                              **({"arm_prefix": arm_prefix} if arm_prefix else {})}
    edges: list[str | None] = [None, *bounds, None] if bounds else [None, None]
    ranges = list(pairwise(edges))

    def chunks() -> Iterator[tuple[str, dict[str, Any]]]:
        for lo, hi in ranges:
            cond, bound = "", dict(params)
            if lo is not None:
                cond, bound["lo"] = cond + " AND t.loan_id > :lo", lo
            if hi is not None:
                cond, bound["hi"] = cond + " AND t.loan_id <= :hi", hi
            yield contacts + cond, bound
        assign()
        yield tasks, params

    total = len(ranges) + 1
    conn.execution_options(parley_write=True)
    if conn.dialect.name == "postgresql":
        if len(ranges) > 1:
            return _write_chunks_in_parallel(ctx, conn, chunks(), total, step, crash_point)
        return _write_chunks_in_turn(conn, chunks(), total, step, crash_point)
    with _one_checkpoint(conn):
        return _write_chunks_in_turn(conn, chunks(), total, step, crash_point)


@contextmanager
def _one_checkpoint(conn: Connection) -> Iterator[None]:
    """SQLite: no automatic WAL checkpoint after each chunk's commit, one at the end. Each
    automatic checkpoint copied that chunk's pages — index pages again and again — back into
    the database file, a quarter of the write time; one pass copies each page once. The
    connection goes back to the pool afterwards, so it gets back the setting it came with
    (read first, not assumed to be SQLite's default), also when the run fails."""
    raw: Any = conn.connection.driver_connection  # sqlite3: no SQLAlchemy transaction begun
    before = int(raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    raw.execute("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        raw.execute(f"PRAGMA wal_autocheckpoint={before}")


def _write_chunks_in_turn(conn: Connection, chunks: Iterator[tuple[str, dict[str, Any]]],
                          total: int, step: Callable[[str, int, int], None],
                          crash_point: Callable[[str], None]) -> int:
    inserted = 0
    for i, (select_sql, params) in enumerate(chunks, start=1):
        inserted += _insert_chunk(conn, select_sql, params)
        step("queue", i, total)
        crash_point(f"queue:{i}")
    return inserted


_ON_CONFLICT = " ON CONFLICT (borrower_id, idempotency_key) DO NOTHING"


def _insert_chunk(conn: Connection, select_sql: str, params: dict[str, Any] | None = None) -> int:
    """One chunk, one committed transaction: a plain INSERT first, and only if a key is already
    there (a re-run: a chunk is whole or absent after a crash, and a second run finds every
    key) the chunk again, ``ON CONFLICT DO NOTHING``. Checking every row for a conflict cost
    the first run, which has none, 30 % of its writing (PostgreSQL, a million rows: 7.2 s
    against 5.6 s). A re-run's chunk stops at its first existing key (rows come in no set
    order, so at worst it is written twice)."""
    def run(on_conflict: str) -> int:
        sql = _insert_rows("contact_queue", select_sql + on_conflict, params or {})
        with conn.begin():
            _batch_memory(conn)
            return max(int(conn.execute(sql, params or {}).rowcount or 0), 0)

    try:
        return run("")
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
    return run(_ON_CONFLICT)


def _insert_rows(table: str, select_sql: str, params: dict[str, Any]) -> Any:
    """``INSERT INTO table (queue columns) select_sql``, its day and time bound as the queue's
    column types (those of them the chunk's parameters carry)."""
    return text(f"INSERT INTO {table} ({_QUEUE_COLS}) {select_sql}").bindparams(
        *(bindparam(k, type_=t) for k, t in (("as_of", Date), ("now", UTCDateTime)) if k in params))


def _is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return (getattr(orig, "sqlstate", None) == "23505"  # PostgreSQL
            or getattr(orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_UNIQUE")


# PostgreSQL connections writing queue chunks at once: one per core of the machine this was
# tuned on; the planning connection computes the next chunk meanwhile.
WRITERS = 2
# Staging runs ahead of the writers (so the assignment overlaps their work), but no further
# than this many chunks not yet written: the stage tables never hold more than about this
# many chunks' rows, however big the day (at a million accounts, ten chunks, it never waits).
MAX_STAGED = 12
_STAGE_PREFIX = "daily_run_stage_"


def _write_chunks_in_parallel(ctx: Context, conn: Connection,
                              chunks: Iterator[tuple[str, dict[str, Any]]], total: int,
                              step: Callable[[str, int, int], None],
                              crash_point: Callable[[str], None]) -> int:
    """A pipeline for PostgreSQL, where one backend writing the queue is CPU-bound on one core:
    the planning connection (which alone sees the run's temporary tables) stages each chunk's
    rows into an UNLOGGED table — no indexes, no WAL — and ``WRITERS`` other connections copy
    staged chunks into ``contact_queue`` at the same time, each chunk one committed transaction
    with the same ``ON CONFLICT`` as the sequential path, so a crash at any point leaves only
    whole chunks and a re-run completes exactly as a clean run would. The last chunk, the
    collector tasks, the planning connection writes itself once the writers are done.

    An advisory lock keeps one run per database at a time, which lets a run drop any stage
    table a crashed run left behind."""
    import uuid
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    token = uuid.uuid4().hex[:12]
    with conn.begin():
        conn.execute(text("SELECT pg_advisory_lock(hashtext('parley.daily_run'))"))
        left_behind = list(conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE :p"),
            {"p": _STAGE_PREFIX + "%"}).scalars())
    staged: list[str] = []
    try:
        _drop_stages(conn, left_behind)

        def write(stage: str) -> int:
            with ctx.db.engine.connect() as w:
                n = _insert_chunk(w, f"SELECT {_QUEUE_COLS} FROM {stage}")
                # its own transaction: a stage left by a crash here is dropped by the next run
                with w.begin():
                    w.execute(text(f"DROP TABLE {stage}"))
                return n

        inserted = done = 0
        pending: dict[Future[int], int] = {}

        def settle(block: bool) -> None:
            nonlocal inserted, done
            if not pending:
                return
            finished, _ = wait(list(pending), timeout=None if block else 0,
                               return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=lambda f: pending[f]):
                k = pending.pop(f)
                inserted += f.result()
                done += 1
                step("queue", done, total)
                crash_point(f"queue:{k}")

        with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="daily-run-writer") as pool:
            try:
                for k, (select_sql, params) in enumerate(chunks, start=1):
                    if k == total:
                        # The last chunk (the collector tasks) comes after the ranking, when
                        # the writers are done or nearly: staging it for them would only copy
                        # it twice (0.4 s of the critical path at a million accounts).
                        while pending:
                            settle(block=True)
                        inserted += _insert_chunk(conn, select_sql, params)
                        done += 1
                        step("queue", done, total)
                        crash_point(f"queue:{k}")
                        continue
                    stage = f"{_STAGE_PREFIX}{token}_{k}"
                    with conn.begin():
                        _batch_memory(conn)
                        conn.execute(text(f"CREATE UNLOGGED TABLE {stage} AS SELECT {_QUEUE_COLS} "
                                          "FROM contact_queue WITH NO DATA"))
                        staged.append(stage)
                        conn.execute(_insert_rows(stage, select_sql, params), params)
                    pending[pool.submit(write, stage)] = k
                    # no waiting for the writers: staging runs ahead of them, so that what the
                    # chunk source does next (the assignment) overlaps their work; only as far
                    # as MAX_STAGED
                    settle(block=False)
                    while len(pending) >= MAX_STAGED:
                        settle(block=True)
                while pending:
                    settle(block=True)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        return inserted
    finally:
        if conn.in_transaction():
            conn.rollback()
        _drop_stages(conn, staged)
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_unlock(hashtext('parley.daily_run'))"))


def _drop_stages(conn: Connection, names: Sequence[str]) -> None:
    with conn.begin():
        for name in names:
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
