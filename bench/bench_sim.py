"""Benchmark: simulated borrower-days per second, Parley and the naive run together, on SQLite
and on PostgreSQL (throwaway databases on the benchmarks' server, ``bench.pg.SERVER``; left
out when no server answers). The whole simulation is timed: writing the book, the
daily snapshot and daily run, every permit, payment and agreement, and the naive run with its
judge (the naive run is in memory and takes ≈ 5 % of the time).

The book is split by borrower into shards (default: one per CPU core on SQLite, two per core
on PostgreSQL), each simulated in its own process on its own database
(``parley.sim.engine.simulate_sharded``) — how Parley scales out, since every invariant is per
borrower. ``PARLEY_BENCH_SIM_SHARDS=N`` sets the number for both; ``=1`` times one process,
exactly what ``simulate`` does.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.pg import server_answers, throwaway_databases
from parley.config import Settings
from parley.sim.engine import SimConfig, simulate_sharded
from parley.store.db import Database
from parley.store.migrate import upgrade

# SQLite: one shard per core. PostgreSQL: two per core — a shard's process waits on the
# server for about half its time (measured: 99 s wall for 50 s of Python in one process), and
# the server's own work runs in its backends, so one process per core leaves cores idle.
_CORES = os.cpu_count() or 1
SHARDS = int(os.environ.get("PARLEY_BENCH_SIM_SHARDS", "0")) or _CORES
PG_SHARDS = int(os.environ.get("PARLEY_BENCH_SIM_SHARDS", "0")) or 2 * _CORES


def _one(urls: list[str], config: SimConfig) -> float:
    for url in urls:  # the schema is created before the clock starts, as it always was
        db = Database(url)
        try:
            upgrade(db)
        finally:
            db.dispose()
    result = simulate_sharded(config, urls, Settings(database_url=urls[0], env="test"))
    return float(config.borrowers * config.days / result.seconds)


def _sqlite(config: SimConfig, shards: int = SHARDS) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _one([f"sqlite:///{Path(tmp) / f'sim-{k}.db'}" for k in range(shards)], config)


def _pg(config: SimConfig, shards: int = PG_SHARDS) -> float | None:
    if not server_answers():
        return None
    with throwaway_databases(shards, "parley_bench_sim") as urls:
        return _one(urls, config)


def run(quick: bool = False) -> dict[str, float]:
    """Figures for both databases; the PostgreSQL key is left out when no server answers."""
    # agents=2 in quick mode: what 300 borrowers get unsharded (each shard would otherwise
    # get its own minimum of two collectors). 3,000 borrowers get six either way.
    config = (SimConfig(borrowers=300, days=10, seed=5, agents=2) if quick
              else SimConfig(borrowers=3000, days=20, seed=5))
    out = {"sim_borrower_days_per_s_sqlite": _sqlite(config)}
    pg = _pg(config)
    if pg is not None:
        out["sim_borrower_days_per_s_pg"] = pg
    return out


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))  # noqa: T201
