"""Strategies for the set-based daily run: load them from YAML, compile them to SQL.

``state_case`` turns a strategy's enforcement-off tags and ordered state conditions into one
SQLAlchemy Core ``CASE`` expression, so the daily run can assign a state to every account in
one ``SELECT`` (or ``INSERT ... SELECT``) instead of looping over accounts. It compiles the
same ``Condition`` records the pure evaluator (``parley.core.strategy.evaluate``) reads, with
the same semantics; a property test checks that the two agree on generated accounts.

Semantics of the CASE, in order:

1. any enforcement-off tag in the tags column → ``NULL`` (no state, no action);
2. each state, most severe first → the first whose condition holds gives its name;
3. otherwise → the strategy's ``clear_state`` name.

Columns are passed in by name (``COLUMN_NAMES``); only those the strategy uses are required.
``tags`` must hold the account's canonical lowercase tags as ``,tag1,tag2,`` (an account
without tags: ``,`` or ``''`` or NULL). Tags the caller knows as flags rather than text (the
daily run's ``agreement_active`` and ``hold``) can be passed as ``flags``: tag → a boolean
expression that is never NULL, tested before the text. ``balance_minor`` is integer minor
units and is only compared when ``currency`` equals the strategy's currency. A NULL
``bucket``, ``product`` or ``risk_score`` fails any predicate on it, as ``None`` does in the
pure evaluator.

Champion/challenger in SQL: SQL has no portable SHA-256, so precompute
``parley.core.strategy.experiment_bucket(seed, account_id)`` into a column (it never changes
for a given seed) and use ``arm_case`` to map that column to the arm's strategy id.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import String, and_, case, func, literal, not_, null, or_, true
from sqlalchemy.sql.elements import ColumnElement

from parley.core.strategy import (
    Condition,
    Experiment,
    Strategy,
    arm_ranges,
    parse_experiment,
    parse_strategy,
)
from parley.errors import InvalidInput

COLUMN_NAMES = (
    "dpd",
    "bucket",
    "balance_minor",
    "currency",
    "product",
    "risk_score",
    "broken_promises",
    "tags",
)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no stubs here
    """PyYAML's safe loader, except that a key written twice in one mapping is an error
    (plain PyYAML keeps the last one silently, which hides typos in a strategy)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes ``InvalidInput`` naming the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{where}{problem}", record=source) from exc


def load_strategy_text(text: str, source: str = "<strategy>") -> Strategy:
    """A strategy from YAML text; raises ``InvalidInput(s)`` naming every bad YAML path."""
    return _parsed_strategy(text, source)


@lru_cache(maxsize=64)
def _parsed_strategy(text: str, source: str) -> Strategy:
    # Keyed by the text itself, so an edited file is parsed again; a Strategy is immutable, so
    # runs may share one. (Each daily run reads its strategy: parsing it cost a simulated day
    # more than its whole run on a small book.) Errors are raised, never cached.
    return parse_strategy(load_yaml(text, source), source)


def load_strategy(path: str | Path) -> Strategy:
    """A strategy from a YAML file (UTF-8)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read the file: {exc.strerror}", record=str(p)) from exc
    return load_strategy_text(text, str(p))


def load_experiment(path: str | Path) -> Experiment:
    """An experiment ``{id, seed, arms: [{strategy, weight}]}`` from a YAML file."""
    p = Path(path)
    return parse_experiment(load_yaml(p.read_text(encoding="utf-8"), str(p)), str(p))


def bundled_strategy_path(name: str) -> Path:
    """The path of a strategy shipped in ``parley/strategies`` (``default``, ``challenger``)."""
    return Path(__file__).resolve().parent.parent / "strategies" / f"{name}.yaml"


# --------------------------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------------------------


Flags = Mapping[str, ColumnElement[bool]]


def state_case(strategy: Strategy, cols: Mapping[str, ColumnElement[Any]],
               flags: Flags | None = None) -> ColumnElement[Any]:
    """A CASE giving each row's state name (NULL when enforcement is off); see module doc."""
    _require_columns(strategy, cols)
    flags = flags or {}
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    if strategy.enforcement_off_tags:
        tags = cols["tags"]
        whens.append((or_(*(_has_tag(tags, t, flags) for t in strategy.enforcement_off_tags)),
                      null()))
    for state in strategy.states:
        whens.append((condition_sql(state.condition, strategy, cols, flags),
                      literal(state.name, String)))
    return case(*whens, else_=literal(strategy.clear_state, String))


def condition_sql(
    c: Condition, strategy: Strategy, cols: Mapping[str, ColumnElement[Any]],
    flags: Flags | None = None,
) -> ColumnElement[bool]:
    """One condition as a boolean SQL expression (TRUE for the empty condition)."""
    parts: list[ColumnElement[bool]] = []
    if c.days_past_due_at_least is not None:
        parts.append(cols["dpd"] >= c.days_past_due_at_least)
    if c.days_past_due_at_most is not None:
        parts.append(cols["dpd"] <= c.days_past_due_at_most)
    if c.bucket_in is not None:
        parts.append(cols["bucket"].in_(c.bucket_in))
    if c.balance_at_least_minor is not None or c.balance_at_most_minor is not None:
        parts.append(cols["currency"] == strategy.currency)
    if c.balance_at_least_minor is not None:
        parts.append(cols["balance_minor"] >= c.balance_at_least_minor)
    if c.balance_at_most_minor is not None:
        parts.append(cols["balance_minor"] <= c.balance_at_most_minor)
    if c.product_in is not None:
        parts.append(cols["product"].in_(c.product_in))
    if c.risk_score_at_least is not None:
        parts.append(cols["risk_score"] >= c.risk_score_at_least)
    if c.risk_score_at_most is not None:
        parts.append(cols["risk_score"] <= c.risk_score_at_most)
    if c.broken_promises_at_least is not None:
        parts.append(cols["broken_promises"] >= c.broken_promises_at_least)
    flags = flags or {}
    for tag in c.tags_include:
        parts.append(_has_tag(cols["tags"], tag, flags))
    for tag in c.tags_exclude:
        # COALESCE so that a NULL tags column means "no tags" (NOT NULL would be unknown).
        parts.append(not_(_has_tag(func.coalesce(cols["tags"], ","), tag, flags)))
    return and_(*parts) if parts else true()


def arm_case(experiment: Experiment, bucket: ColumnElement[Any]) -> ColumnElement[Any]:
    """A CASE mapping a precomputed ``experiment_bucket`` column to the arm's strategy id."""
    whens = [
        (and_(bucket >= low, bucket < high), literal(arm.strategy, String))
        for arm, low, high in arm_ranges(experiment)
        if high > low
    ]
    return case(*whens, else_=null()) if whens else null()


def _has_tag(tags: ColumnElement[Any], tag: str, flags: Flags) -> ColumnElement[bool]:
    # autoescape: "_" in a tag (agreement_active) must not be LIKE's one-character wildcard.
    text_test = tags.contains(f",{tag},", autoescape=True)
    return or_(flags[tag], text_test) if tag in flags else text_test


def _require_columns(strategy: Strategy, cols: Mapping[str, ColumnElement[Any]]) -> None:
    needed: set[str] = set()
    if strategy.enforcement_off_tags:
        needed.add("tags")
    for state in strategy.states:
        c = state.condition
        if c.days_past_due_at_least is not None or c.days_past_due_at_most is not None:
            needed.add("dpd")
        if c.bucket_in is not None:
            needed.add("bucket")
        if c.balance_at_least_minor is not None or c.balance_at_most_minor is not None:
            needed |= {"balance_minor", "currency"}
        if c.product_in is not None:
            needed.add("product")
        if c.risk_score_at_least is not None or c.risk_score_at_most is not None:
            needed.add("risk_score")
        if c.broken_promises_at_least is not None:
            needed.add("broken_promises")
        if c.tags_include or c.tags_exclude:
            needed.add("tags")
    missing = sorted(needed - set(cols))
    if missing:
        raise ValueError(f"strategy {strategy.id!r} needs columns {missing}; got {sorted(cols)}")


__all__ = [
    "COLUMN_NAMES",
    "arm_case",
    "bundled_strategy_path",
    "condition_sql",
    "load_experiment",
    "load_strategy",
    "load_strategy_text",
    "load_yaml",
    "state_case",
]
