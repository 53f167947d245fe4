"""The sharded simulator (``simulate_sharded``): the book split by borrower over several
databases, one process each. Deterministic for (seed, shards), Parley still breaks no rule,
every shard's audit chain verifies, and the shards' statistics add up to the summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.pg import drop_databases
from sqlalchemy import create_engine, text

from parley.config import Settings
from parley.sim import engine
from parley.sim.engine import SimConfig, shard_config, shard_of, simulate_sharded
from parley.sim.judge import VIOLATION_KEYS
from tests.conftest import make_ctx, require_postgres

CONFIG = SimConfig(borrowers=160, days=6, seed=7)


def _sqlite_urls(template: Path, where: Path, n: int) -> list[str]:
    urls = []
    for k in range(n):
        path = where / f"shard-{k}.db"
        shutil.copyfile(template, path)
        urls.append(f"sqlite:///{path}")
    return urls


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def shard_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Two empty databases on each backend (migrated by the simulator when needed)."""
    if request.param == "sqlite":
        yield _sqlite_urls(request.getfixturevalue("sqlite_template"), tmp_path, 2)
        return
    from parley.store.db import normalise_url

    admin_url = normalise_url(require_postgres())
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"parley_test_shard_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield [admin_url.rsplit("/", 1)[0] + f"/{name}" for name in names]
    finally:
        drop_databases(admin, names)
        admin.dispose()


def test_shards_break_no_rule_and_every_shards_audit_chain_verifies(shard_urls: list[str]) -> None:
    from parley.services.audit import verify_audit

    result = simulate_sharded(CONFIG, shard_urls, Settings(database_url=shard_urls[0], env="test"))
    parley, naive = result.summary["parley"], result.summary["naive"]
    for key in VIOLATION_KEYS:
        assert parley[key] == 0, key
    assert parley["violations_by_rule"] == {}
    assert parley["contacts"] > 0 and naive["contacts"] > 0
    assert sum(naive[k] for k in VIOLATION_KEYS) > 0
    assert parley["services"]["gate"].startswith("real:")
    assert result.series["portfolio"]["borrowers"] == CONFIG.borrowers
    for url in shard_urls:
        ctx = make_ctx(url)
        try:
            report = verify_audit(ctx)
            with ctx.db.read() as conn:
                borrowers = conn.execute(text("SELECT COUNT(*) FROM borrower")).scalar_one()
                decisions = conn.execute(text(
                    "SELECT COUNT(*) FROM audit_log WHERE kind = 'gate.decision'")).scalar_one()
        finally:
            ctx.db.dispose()
        assert report.ok, report.problems[:3]
        assert borrowers == CONFIG.borrowers // 2  # borrower i in shard i mod 2
        assert decisions > 0  # every shard asked the real gate


def test_sharded_runs_are_deterministic_and_add_up_their_shards(sqlite_template: Path,
                                                               tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite://", env="test")
    runs = []
    for name in ("a", "b"):
        where = tmp_path / name
        where.mkdir()
        runs.append(simulate_sharded(CONFIG, _sqlite_urls(sqlite_template, where, 2), settings))
    assert runs[0].summary == runs[1].summary
    assert runs[0].series == runs[1].series
    # Each shard alone (one process, its own database) gives the statistics that were added up.
    parts = []
    for k in range(2):
        alone = tmp_path / f"alone-{k}.db"
        shutil.copyfile(sqlite_template, alone)
        ctx = make_ctx(f"sqlite:///{alone}")
        try:
            part = shard_of(engine._portfolio(CONFIG), k, 2)
            parts.append(engine._run_both(shard_config(CONFIG, k, 2), part, ctx,
                                          lambda _s, _d, _t: None))
        finally:
            ctx.db.dispose()
    total = engine.summarise(engine._merge([p.parley for p in parts]))
    assert {k: v for k, v in runs[0].summary["parley"].items() if k != "services"} == total
    assert runs[0].summary["naive"] == engine.summarise(engine._merge([p.naive for p in parts]))


def test_one_shard_is_the_plain_simulation(sqlite_template: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from parley.adapters.clock import FixedClock

    [url] = _sqlite_urls(sqlite_template, tmp_path, 1)
    sharded = simulate_sharded(CONFIG, [url], Settings(database_url=url, env="test"))
    plain_path = tmp_path / "plain.db"
    shutil.copyfile(sqlite_template, plain_path)
    ctx = make_ctx(f"sqlite:///{plain_path}", FixedClock(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)))
    try:
        plain = engine.simulate(CONFIG, ctx)
    finally:
        ctx.db.dispose()
    assert sharded.summary == plain.summary
    assert sharded.series == plain.series


def test_collectors_are_dealt_out_to_the_shards() -> None:
    config = SimConfig(borrowers=3001, days=1, agents=7)
    shares = [shard_config(config, k, 3) for k in range(3)]
    assert [s.borrowers for s in shares] == [1001, 1000, 1000]
    assert sum(s.agent_count for s in shares) == 7
    auto = [shard_config(SimConfig(borrowers=3000, days=1), k, 2).agent_count for k in range(2)]
    assert auto == [3, 3]  # one per 500 borrowers, as unsharded


def _cli(*args: str, var: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARLEY_VAR_DIR": str(var)}
    return subprocess.run([sys.executable, "-m", "parley.faces.cli.main", "simulate", *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_the_cli_runs_shards_deterministically_and_parley_breaks_no_rule(tmp_path: Path) -> None:
    args = ("--borrowers", "160", "--days", "5", "--seed", "4", "--shards", "2", "--format", "json",
            "--no-report")
    first, second = _cli(*args, var=tmp_path / "a"), _cli(*args, var=tmp_path / "b")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert doc["parley"]["contacts"] > 0
    for key in ("contacts_after_agreement", "contacts_outside_hours", "cap_breaches",
                "third_party_disclosures"):
        assert doc["parley"][key] == 0, key
    assert sorted(p.name for p in (tmp_path / "a" / "sim").glob("*.db")) == [
        "simulate-seed4-shard0.db", "simulate-seed4-shard1.db"]


def test_the_cli_refuses_shards_with_a_database_url(tmp_path: Path) -> None:
    proc = _cli("--borrowers", "10", "--days", "2", "--shards", "2", "--database-url",
                f"sqlite:///{tmp_path / 'x.db'}", var=tmp_path)
    assert proc.returncode == 2
    assert "database_url" in proc.stderr and "--shards" in proc.stderr
    assert not (tmp_path / "x.db").exists()
