"""Champion/challenger: a stable, seeded, weighted split of accounts."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.strategy import (
    Arm,
    Experiment,
    arm_ranges,
    assign_arm,
    experiment_bucket,
    parse_experiment,
)
from parley.errors import InvalidInputs

EXPERIMENT = Experiment("q3", "seed-2026", (Arm("default", 80), Arm("challenger", 20)))
ids = st.text(min_size=1, max_size=30)


@given(ids)
def test_the_same_account_always_gets_the_same_arm(account_id: str) -> None:
    assert assign_arm(EXPERIMENT, account_id) == assign_arm(EXPERIMENT, account_id)


@given(st.lists(ids, min_size=1, max_size=20, unique=True), st.randoms())
def test_assignment_does_not_depend_on_order_or_on_other_accounts(
    accounts: list[str], rnd: Any
) -> None:
    alone = {a: assign_arm(EXPERIMENT, a) for a in accounts}
    shuffled = accounts[:]
    rnd.shuffle(shuffled)
    together = {a: assign_arm(EXPERIMENT, a) for a in shuffled + ["someone-else"]}
    assert all(together[a] == alone[a] for a in accounts)


def test_the_bucket_is_sha256_of_seed_and_account_id_and_is_pinned() -> None:
    # Pinned so that a change to the hashing (which would reshuffle every running experiment,
    # and every precomputed bucket column) fails here.
    digest = hashlib.sha256(b"seed-2026\x1facc-1").digest()
    assert experiment_bucket("seed-2026", "acc-1") == int.from_bytes(digest[:8], "big") % 10_000
    assert (experiment_bucket("seed-2026", "acc-1"), experiment_bucket("seed-2026", "acc-2")) == (
        8908,
        382,
    )


def test_a_different_seed_reshuffles_accounts() -> None:
    other = Experiment("q3", "another-seed", EXPERIMENT.arms)
    moved = sum(assign_arm(EXPERIMENT, f"a{i}") != assign_arm(other, f"a{i}") for i in range(2000))
    assert moved > 400  # ~32% expected for an 80/20 split


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=4), st.text(max_size=8)
)
def test_weights_are_respected_within_statistical_tolerance(weights: list[int], seed: str) -> None:
    exp = Experiment("e", seed or "s", tuple(Arm(f"s{i}", w) for i, w in enumerate(weights)))
    n = 8000
    counts = {arm.strategy: 0 for arm in exp.arms}
    for i in range(n):
        counts[assign_arm(exp, f"acc-{i}").strategy] += 1
    total = sum(weights)
    for arm in exp.arms:
        p = arm.weight / total
        tolerance = 5 * math.sqrt(n * p * (1 - p)) + 2  # five standard deviations
        assert abs(counts[arm.strategy] - n * p) <= tolerance


def test_arm_ranges_tile_all_buckets_and_a_zero_weight_arm_gets_none() -> None:
    exp = Experiment("e", "s", (Arm("a", 1), Arm("paused", 0), Arm("b", 2)))
    ranges = [(arm.strategy, low, high) for arm, low, high in arm_ranges(exp)]
    assert ranges == [("a", 0, 3333), ("paused", 3333, 3333), ("b", 3333, 10_000)]
    assert all(assign_arm(exp, f"x{i}").strategy != "paused" for i in range(500))


def test_an_experiment_parses_from_a_document() -> None:
    doc = {
        "id": "q3",
        "seed": "seed-2026",
        "arms": [{"strategy": "default", "weight": 80}, {"strategy": "challenger", "weight": 20}],
    }
    assert parse_experiment(doc, "e.yaml") == EXPERIMENT


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"id": "e", "seed": "s", "arms": []}, "arms"),
        ({"id": "e", "seed": "s", "arms": [{"strategy": "a", "weight": -1}]}, "arms[0].weight"),
        ({"id": "e", "seed": "s", "arms": [{"strategy": "a", "weight": 0}]}, "arms"),
        (
            {
                "id": "e",
                "seed": "s",
                "arms": [{"strategy": "a", "weight": 1}, {"strategy": "a", "weight": 1}],
            },
            "arms[1].strategy",
        ),
        ({"id": "e", "arms": [{"strategy": "a", "weight": 1}]}, "seed"),
        (
            {"id": "e", "seed": "s", "arms": [{"strategy": "a", "weight": 1, "share": 2}]},
            "arms[0].share",
        ),
    ],
)
def test_a_bad_experiment_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputs) as caught:
        parse_experiment(doc, "e.yaml")
    assert field in [e.field for e in caught.value.errors]
