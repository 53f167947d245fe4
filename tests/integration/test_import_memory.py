"""Large files stream: importing four times as many loans must not take four times the memory.

Each import runs in a fresh interpreter (a subprocess), through the parallel path with small
ranges, so the small file already has many more chunks than are ever in flight. The writing
process is measured with tracemalloc (Python allocations: deterministic, and blind to SQLite's
own page cache, which grows with the database and is bounded by its cache_size); the parsing
children by their peak resident size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, resource, sys, tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import parley.services.imports as imports
import parley.services.loan_import as loan_import
from parley.adapters.clock import FixedClock
from parley.config import Settings
from parley.services.context import Context
from parley.store.db import Database, bulk_insert, db_datetime
from parley.store.migrate import upgrade

n, tmp = int(sys.argv[1]), Path(sys.argv[2])
borrowers = 500
path = tmp / "loans.csv"
with path.open("w") as fh:
    fh.write("loan_id,borrower_id,currency,principal,annual_rate,term,method,disbursed_on,first_due_on\n")
    for i in range(n):
        start = date(2025, 6, 1) + timedelta(days=i % 200)
        fh.write(f"L{i:08d},B{i % borrowers:05d},CNY,{1000 + i % 9000}.{i % 100:02d},{(7.2, 12, 23.99)[i % 3]},{(3, 6, 12, 24)[i % 4]},"
                 f"{('equal-installment', 'equal-principal', 'interest-only')[i % 3]},{start},{start + timedelta(days=30)}\n")
url = f"sqlite:///{tmp}/memory.db"
db = Database(url)
upgrade(db)
ctx = Context(db, Settings(database_url=url, env="test"), FixedClock(datetime(2026, 3, 1, tzinfo=UTC)))
with db.transaction() as conn:
    ts = db_datetime(conn, ctx.clock.now())
    bulk_insert(conn, "borrower", ("id", "name", "preferred_language", "jurisdiction", "tags", "content_hash", "created_at",
                                   "audit_seq", "audit_head"),
                ((f"B{i:05d}", "x", "zh-Hans", "CN", "", "-", ts, 0, "") for i in range(borrowers)))
imports.PARALLEL_ABOVE_BYTES = 0
loan_import.RANGE_BYTES = 8_192  # ~90 loans a chunk
tracemalloc.start()
report = imports.import_file(ctx, "loans", path)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
assert report.inserted == n, report
print(json.dumps({"writer_peak": peak, "children_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _measure(n: int, tmp: Path) -> dict[str, int]:
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(n), str(tmp)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_four_times_the_loans_takes_about_the_same_memory(tmp_path):
    small = _measure(2_000, tmp_path / "small")
    large = _measure(8_000, tmp_path / "large")
    # Kept whole, 8,000 loans' schedules (~60,000 instalments) alone would be tens of MB more;
    # streamed, only the few chunks in flight are held, whatever the file's length.
    assert large["writer_peak"] < 1.5 * small["writer_peak"], (small, large)
    assert large["children_maxrss_kb"] < 1.5 * small["children_maxrss_kb"], (small, large)
