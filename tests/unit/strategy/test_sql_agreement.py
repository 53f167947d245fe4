"""The SQL CASE and the pure evaluator agree on every account (SQLite, SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
)

from parley.core.strategy import (
    AccountSnapshot,
    Arm,
    Condition,
    Experiment,
    State,
    Strategy,
    assign_arm,
    evaluate,
    experiment_bucket,
)
from parley.services.daily_run import _tag_flags
from parley.services.strategy_sql import arm_case, bundled_strategy_path, load_strategy, state_case

AS_OF = date(2026, 11, 23)
TAGS = (
    "agreement_active",
    "hold",
    "vip",
    "lang_yue",
    "no_field_visit",
    "agreementxactive",
    "x_vip",
)
BUCKETS = ("M1", "M2", "M3", "WO")
PRODUCTS = ("cash_loan", "card")

metadata = MetaData()
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String, primary_key=True),
    Column("dpd", Integer, nullable=False),
    Column("bucket", String),
    Column("balance_minor", Integer, nullable=False),
    Column("currency", String, nullable=False),
    Column("product", String),
    Column("risk_score", Integer),
    Column("broken_promises", Integer, nullable=False),
    Column("tags", String),
    Column("arm_bucket", Integer),
    Column("agreement", Integer),  # NULL or 1, as the run's outer join to tmp_run_facts gives them
    Column("hold", Integer),
)
COLS = {
    "dpd": accounts.c.dpd,
    "bucket": accounts.c.bucket,
    "balance_minor": accounts.c.balance_minor,
    "currency": accounts.c.currency,
    "product": accounts.c.product,
    "risk_score": accounts.c.risk_score,
    "broken_promises": accounts.c.broken_promises,
    "tags": accounts.c.tags,
}
# The daily run passes the tags it derives as flags instead of spelling them into the text:
# its own expressions, so a change to them is checked here too.
FLAGS = _tag_flags(accounts)


@cache
def engine() -> Engine:
    e = create_engine("sqlite://")
    metadata.create_all(e)
    return e


@cache
def bundled() -> tuple[Strategy, ...]:
    return tuple(load_strategy(bundled_strategy_path(n)) for n in ("default", "challenger"))


def account_rows() -> st.SearchStrategy[AccountSnapshot]:
    return st.builds(
        AccountSnapshot,
        account_id=st.just(""),  # made unique per batch below
        borrower_id=st.just("b"),
        loan_id=st.just("l"),
        days_past_due=st.one_of(
            st.integers(0, 400),
            st.sampled_from([0, 1, 2, 3, 7, 8, 15, 16, 30, 31, 60, 61, 90, 91, 150, 151, 180, 181]),
        ),
        bucket=st.one_of(st.none(), st.sampled_from(BUCKETS)),
        balance_minor=st.one_of(
            st.integers(0, 10**8), st.sampled_from([199_999, 200_000, 300_000, 500_000, 800_000])
        ),
        currency=st.sampled_from(("CNY", "CNY", "CNY", "USD")),
        product=st.one_of(st.none(), st.sampled_from(PRODUCTS)),
        risk_score=st.one_of(st.none(), st.integers(0, 1000), st.just(700)),
        broken_promises=st.integers(0, 4),
        tags=st.frozensets(st.sampled_from(TAGS), max_size=3),
    )


def bounds(lo: int, hi: int) -> st.SearchStrategy[tuple[int | None, int | None]]:
    return st.tuples(st.none() | st.integers(lo, hi), st.none() | st.integers(lo, hi))


def maybe_set(pool: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...] | None]:
    return st.none() | st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True).map(
        tuple
    )


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    dpd = draw(bounds(0, 400))
    bal = draw(bounds(0, 10**8))
    risk = draw(bounds(0, 1000))
    return Condition(
        days_past_due_at_least=dpd[0], days_past_due_at_most=dpd[1],
        bucket_in=draw(maybe_set(BUCKETS)),
        balance_at_least_minor=bal[0], balance_at_most_minor=bal[1],
        product_in=draw(maybe_set(PRODUCTS)),
        risk_score_at_least=risk[0], risk_score_at_most=risk[1],
        broken_promises_at_least=draw(st.none() | st.integers(0, 4)),
        tags_include=tuple(draw(st.lists(st.sampled_from(TAGS[2:]), max_size=2, unique=True))),
        tags_exclude=tuple(draw(st.lists(st.sampled_from(TAGS[2:]), max_size=2, unique=True))),
    )  # fmt: skip


@st.composite
def random_strategies(draw: st.DrawFn) -> Strategy:
    conds = draw(st.lists(conditions(), min_size=1, max_size=6))
    off = draw(st.lists(st.sampled_from(TAGS[:3]), max_size=2, unique=True))
    return Strategy(
        id="random", name="random", version=1, currency="CNY",
        states=tuple(State(f"s{i}", c) for i, c in enumerate(conds)),
        enforcement_off_tags=tuple(off),
    )  # fmt: skip


def tags_column(tags: frozenset[str], null_when_empty: bool) -> str | None:
    if not tags:
        return None if null_when_empty else ","
    return "," + ",".join(sorted(tags)) + ","


def sql_states(
    strategy: Strategy, batch: list[AccountSnapshot], null_tags: bool, flagged: bool = False
) -> Iterator[tuple[str, str | None]]:
    """``flagged``: agreement_active and hold are given as flag columns, not in the text."""
    as_text = (lambda tags: tags - FLAGS.keys()) if flagged else (lambda tags: tags)

    def flag(a: AccountSnapshot, tag: str) -> int | None:
        return 1 if flagged and tag in a.tags else None

    with engine().begin() as conn:
        conn.execute(delete(accounts))
        conn.execute(
            insert(accounts),
            [
                {
                    "account_id": a.account_id,
                    "dpd": a.days_past_due,
                    "bucket": a.bucket,
                    "balance_minor": a.balance_minor,
                    "currency": a.currency,
                    "product": a.product,
                    "risk_score": a.risk_score,
                    "broken_promises": a.broken_promises,
                    "tags": tags_column(as_text(a.tags), null_tags),
                    "arm_bucket": None,
                    "agreement": flag(a, "agreement_active"),
                    "hold": flag(a, "hold"),
                }  # fmt: skip
                for a in batch
            ],
        )
        state = state_case(strategy, COLS, FLAGS if flagged else None)
        yield from conn.execute(select(accounts.c.account_id, state))


def with_ids(batch: list[AccountSnapshot]) -> list[AccountSnapshot]:
    from dataclasses import replace

    return [replace(a, account_id=f"acc-{i}") for i, a in enumerate(batch)]


def assert_agree(strategy: Strategy, batch: list[AccountSnapshot], null_tags: bool,
                 flagged: bool = False) -> None:
    by_id = {a.account_id: a for a in batch}
    rows = dict(sql_states(strategy, batch, null_tags, flagged))
    assert rows.keys() == by_id.keys()
    for account_id, sql_state in rows.items():
        pure = evaluate(strategy, by_id[account_id], AS_OF)
        assert sql_state == pure.state_name, (by_id[account_id], pure)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(account_rows(), min_size=1, max_size=40), st.booleans(), st.booleans())
def test_the_bundled_strategies_give_the_same_state_in_sql_and_in_python(
    batch: list[AccountSnapshot], null_tags: bool, flagged: bool
) -> None:
    batch = with_ids(batch)
    for strategy in bundled():
        assert_agree(strategy, batch, null_tags, flagged)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_strategies(), st.lists(account_rows(), min_size=1, max_size=25), st.booleans(),
       st.booleans())
def test_random_strategies_give_the_same_state_in_sql_and_in_python(
    strategy: Strategy, batch: list[AccountSnapshot], null_tags: bool, flagged: bool
) -> None:
    assert_agree(strategy, with_ids(batch), null_tags, flagged)


def test_an_underscore_in_a_tag_is_not_a_like_wildcard() -> None:
    [strategy] = [s for s in bundled() if s.id == "default"]
    batch = with_ids([AccountSnapshot("", "b", "l", 45, "M2", 100, "CNY", None, None, 0,
                                      frozenset({"agreementxactive"}))])  # fmt: skip
    assert dict(sql_states(strategy, batch, False)) == {"acc-0": "m2"}


def test_a_missing_column_is_named() -> None:
    [strategy] = [s for s in bundled() if s.id == "default"]
    with pytest.raises(ValueError, match="balance_minor"):
        state_case(strategy, {k: v for k, v in COLS.items() if k != "balance_minor"})


def test_a_precomputed_bucket_column_gives_the_same_arm_in_sql() -> None:
    exp = Experiment("q3", "seed", (Arm("default", 70), Arm("paused", 0), Arm("challenger", 30)))
    ids = [f"acc-{i}" for i in range(300)]
    with engine().begin() as conn:
        conn.execute(delete(accounts))
        conn.execute(
            insert(accounts),
            [{"account_id": i, "dpd": 1, "balance_minor": 0, "currency": "CNY",
              "broken_promises": 0, "arm_bucket": experiment_bucket(exp.seed, i)} for i in ids],
        )  # fmt: skip
        rows = dict(
            conn.execute(select(accounts.c.account_id, arm_case(exp, accounts.c.arm_bucket))).all()
        )
    assert rows == {i: assign_arm(exp, i).strategy for i in ids}
