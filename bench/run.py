"""`make bench`: run every benchmark module, merge figures into bench/results.json (one flat
object, latest figure per key) and rewrite the README's benchmark table.

Each module `bench/bench_*.py` exposes `run(quick: bool = False) -> dict[str, float]`.
`python -m bench.run --quick` runs small sizes (a smoke test, figures marked quick);
`--only loanbook,gate_core` picks modules.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# key → (what it measures, target, "higher" or "lower" is better)
TARGETS: dict[str, tuple[str, float, str]] = {
    "import_loans_per_s_sqlite": ("import loans with schedules, SQLite (loans/s)", 20_000, "higher"),
    "import_loans_per_s_pg": ("import loans with schedules, PostgreSQL (loans/s)", 20_000, "higher"),
    "dpd_1m_s_sqlite": ("days past due for 1M loans, SQLite (s)", 5, "lower"),
    "dpd_1m_s_pg": ("days past due for 1M loans, PostgreSQL (s)", 5, "lower"),
    "gate_decisions_per_s": ("pure gate decisions, one core, 90 days history (/s)", 20_000, "higher"),
    "permits_per_s_pg": ("permits, PostgreSQL, 8 workers (/s)", 1_000, "higher"),
    "pgbench_tps": ("pgbench TPC-B-like on the same server (tps)", 0, "higher"),
    "permits_vs_pgbench_ratio": ("permits / pgbench tps", 0.3, "higher"),
    "permits_per_s_sqlite": ("permits, SQLite (/s)", 0, "higher"),
    "permit_violations": ("cap violations under concurrency", 0, "lower"),
    "daily_run_1m_s_sqlite": ("daily run, 1M delinquent accounts, SQLite (s)", 20, "lower"),
    "daily_run_1m_s_pg": ("daily run, 1M delinquent accounts, PostgreSQL (s)", 20, "lower"),
    "queue_write_1m_s_sqlite": ("floor: bulk-write the same queue rows alone (as many rows as the run wrote: daily_run_rows_*), SQLite (s)", 0, "lower"),
    "queue_write_1m_s_pg": ("floor: bulk-write the same queue rows alone (as many rows as the run wrote: daily_run_rows_*), PostgreSQL (s)", 0, "lower"),
    "daily_run_vs_floor_ratio": ("daily run / queue-write floor", 2, "lower"),
    "sim_borrower_days_per_s_sqlite": ("simulated borrower-days, SQLite (/s)", 100_000 * 90 / 600, "higher"),
    "sim_borrower_days_per_s_pg": ("simulated borrower-days, PostgreSQL (/s)", 100_000 * 90 / 600, "higher"),
}


def _modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))


def _verdict(key: str, value: float) -> str:
    if key not in TARGETS or TARGETS[key][1] == 0 and key != "permit_violations":
        return ""
    _, target, better = TARGETS[key]
    ok = value >= target if better == "higher" else value <= target
    return "meets target" if ok else "misses target"


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"


def render_table(results: dict[str, float]) -> str:
    lines = ["| key | what | figure | target | |", "|---|---|---|---|---|"]
    for key in list(TARGETS) + sorted(k for k in results if k not in TARGETS):
        if key not in results:
            continue
        what, target, better = TARGETS.get(key, ("", 0, "higher"))
        tgt = "" if target == 0 and key != "permit_violations" else (f"≥ {_fmt(target)}" if better == "higher" else f"≤ {_fmt(target)}")
        lines.append(f"| `{key}` | {what} | {_fmt(results[key])} | {tgt} | {_verdict(key, results[key])} |")
    return "\n".join(lines)


def update_readme(results: dict[str, float], meta: dict[str, str]) -> None:
    if not README.exists():
        return
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return
    note = f"_Last run: {meta['when']} on {meta['machine']}{' (quick sizes)' if meta.get('quick') else ''}._"
    block = f"{BEGIN}\n{render_table(results)}\n\n{note}\n{END}"
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    wanted = [m for m in args.only.split(",") if m] or _modules()
    results: dict[str, float] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    failed = []
    for name in wanted:
        print(f"== bench {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.bench_{name}").run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            continue
        for key, value in figures.items():
            print(f"   {key} = {value}")
        # results.json is flat: numbers only (breakdowns are printed above, not stored)
        results.update({k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        print(f"   ({time.perf_counter() - started:.0f} s)")
        RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, 2 cores",
            "quick": "yes" if args.quick else ""}
    update_readme(results, meta)
    print(render_table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
