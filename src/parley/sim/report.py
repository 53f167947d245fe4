"""The simulation's report: the summary as a terminal table (Rich) and as a self-contained
HTML page with inline SVG charts (no scripts, nothing fetched) under var/reports/.

Charts: recovery curve by bucket, contacts per day by channel, agreements over time, and
violations prevented by rule. Money is drawn from integer minor units; only pixel positions
are computed, never amounts.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from parley.core.money import format_minor

ROWS: tuple[tuple[str, str], ...] = (
    ("contacts", "Contacts made"),
    ("right_party_contacts", "Right-party contacts"),
    ("recovered", "Recovered (CNY)"),
    ("agreements_made", "Agreements made"),
    ("agreements_kept", "Agreements kept"),
    ("agreements_broken", "Agreements broken"),
    ("agreements_abandoned_after_calls", "Plans abandoned after being called anyway"),
    ("contacts_after_agreement", "Contacts after an agreement"),
    ("contacts_when_nothing_overdue", "Collection contacts when nothing was overdue"),
    ("contacts_outside_hours", "Contacts outside lawful hours"),
    ("cap_breaches", "Frequency cap breaches"),
    ("third_party_disclosures", "Third-party disclosures"),
    ("third_party_unlawful", "Other unlawful third-party contacts"),
    ("contacts_under_hold", "Contacts under a hold (dispute / cease)"),
    ("complaints", "Complaints"),
    ("gate_denials", "Contacts the gate refused"),
)
VIOLATIONS = ("contacts_after_agreement", "contacts_when_nothing_overdue",
              "contacts_outside_hours", "cap_breaches",
              "third_party_disclosures", "third_party_unlawful", "contacts_under_hold")
COLORS = ("#1b6ca8", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f", "#2e4057", "#c05746")


def table(summary: dict[str, Any], title: str = "Parley vs a naive collector") -> Table:
    t = Table(title=title)
    t.add_column("")
    t.add_column("Parley", justify="right")
    t.add_column("Naive", justify="right")
    p, n = summary["parley"], summary["naive"]
    for key, label in ROWS:
        style = "bold red" if key in VIOLATIONS and n.get(key) else None
        t.add_row(label, str(p.get(key, "")), str(n.get(key, "")), style=style)
    return t


# --- SVG ----------------------------------------------------------------------------------


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _scale(value: int, top: int, span: int) -> int:
    return 0 if top <= 0 else value * span // top


def line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int], str, bool]],
               *, unit: str = "", money: bool = False) -> str:
    """series: (name, values, colour, dashed). Values are integers (minor units if money)."""
    w, h, left, bottom, top_pad = 720, 260, 70, 40, 30
    pw, ph = w - left - 170, h - bottom - top_pad
    top = max([max(v) if v else 0 for _, v, _, _ in series] + [1])
    n = max(len(labels), 2)
    out = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="18" font-weight="bold">{_esc(title)}</text>']
    for k in range(5):
        val = top * k // 4
        y = top_pad + ph - _scale(val, top, ph)
        shown = format_minor(val, "CNY").split(".")[0] if money else str(val)
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + pw}" y2="{y}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">'
                   f'{_esc(shown)}</text>')
    step = max(1, len(labels) // 6)
    for i in range(0, len(labels), step):
        x = left + i * pw // (n - 1)
        out.append(f'<text x="{x}" y="{h - bottom + 16}" font-size="10" text-anchor="middle">'
                   f'{_esc(labels[i][5:])}</text>')
    for j, (name, values, color, dashed) in enumerate(series):
        pts = " ".join(f"{left + i * pw // (n - 1)},{top_pad + ph - _scale(v, top, ph)}"
                       for i, v in enumerate(values))
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{pts}"/>')
        ly = top_pad + 14 * j
        out.append(f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 30}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"{dash}/><text x="{left + pw + 34}" '
                   f'y="{ly + 4}" font-size="11">{_esc(name)}</text>')
    if unit:
        out.append(f'<text x="8" y="{top_pad + 4}" font-size="11">{_esc(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, bars: Sequence[tuple[str, int, int]]) -> str:
    """bars: (label, naive count, Parley count), drawn as paired horizontal bars."""
    w, left, row = 720, 280, 30
    h = 50 + row * max(len(bars), 1)
    top = max([max(a, b) for _, a, b in bars] + [1])
    pw = w - left - 60
    out = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="10" y="18" font-weight="bold">{_esc(title)}</text>',
           f'<rect x="{left}" y="26" width="10" height="10" fill="{COLORS[1]}"/>'
           f'<text x="{left + 14}" y="35" font-size="11">naive (violations)</text>'
           f'<rect x="{left + 140}" y="26" width="10" height="10" fill="{COLORS[0]}"/>'
           f'<text x="{left + 154}" y="35" font-size="11">Parley (violations: must be 0)</text>']
    if not bars:
        out.append(f'<text x="10" y="{h - 10}" font-size="12">No violations in either run.</text>')
    for i, (label, a, b) in enumerate(bars):
        y = 44 + i * row
        out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="11">{_esc(label)}</text>'
                   f'<rect x="{left}" y="{y}" width="{_scale(a, top, pw)}" height="11" fill="{COLORS[1]}"/>'
                   f'<text x="{left + _scale(a, top, pw) + 4}" y="{y + 10}" font-size="10">{a}</text>'
                   f'<rect x="{left}" y="{y + 12}" width="{_scale(b, top, pw)}" height="11" fill="{COLORS[0]}"/>'
                   f'<text x="{left + _scale(b, top, pw) + 4}" y="{y + 22}" font-size="10">{b}</text>')
    out.append("</svg>")
    return "".join(out)


def _cumulative(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def charts(series: dict[str, Any]) -> dict[str, str]:
    days = series["days"]
    buckets = [b for b in series["buckets"] if b != "M0"]
    rec = []
    for j, bucket in enumerate(buckets):
        for run, dashed in (("parley", False), ("naive", True)):
            vals = _cumulative([d.get(bucket, 0) for d in series[run]["recovered_by_day"]])
            if vals and vals[-1]:
                rec.append((f"{run} {bucket}", vals, COLORS[j % len(COLORS)], dashed))
    channels = sorted({c for run in ("parley", "naive") for d in series[run]["contacts_by_day"] for c in d})
    con = [(f"{run} {c}", [d.get(c, 0) for d in series[run]["contacts_by_day"]],
            COLORS[j % len(COLORS)], run == "naive")
           for j, c in enumerate(channels) for run in ("parley", "naive")]
    agr = [(f"{run} {k}", [d[k] for d in series[run]["agreements_by_day"]],
            COLORS[j], run == "naive")
           for j, k in enumerate(("made", "kept", "broken", "active")) for run in ("parley", "naive")]
    rules = sorted(set(series["naive"]["violations_by_rule"]) | set(series["parley"]["violations_by_rule"]))
    bars = sorted(((r, series["naive"]["violations_by_rule"].get(r, 0),
                    series["parley"]["violations_by_rule"].get(r, 0)) for r in rules),
                  key=lambda x: (-x[1], x[0]))
    return {
        "recovery": line_chart("Recovery curve by bucket (cumulative, CNY; dashed = naive)", days, rec, money=True),
        "contacts": line_chart("Contacts per day by channel (dashed = naive)", days, con),
        "agreements": line_chart("Agreements over time (cumulative; dashed = naive)", days, agr),
        "violations": bar_chart("Violations prevented, by rule (the naive run's, judged by the gate)", bars),
    }


def html_report(result: Any) -> str:
    s, series, cfg = result.summary, result.series, result.config
    rows = "".join(
        f"<tr{' class=bad' if k in VIOLATIONS and s['naive'].get(k) else ''}><th>{_esc(label)}</th>"
        f"<td>{_esc(s['parley'].get(k, ''))}</td><td>{_esc(s['naive'].get(k, ''))}</td></tr>"
        for k, label in ROWS)
    services = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in result.services.items())
    denials = "".join(f"<li>{_esc(r)}: {n}</li>" for r, n in s["parley"]["denials_by_rule"].items()) or "<li>none</li>"
    pf = series["portfolio"]
    c = charts(series)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley simulation — seed {cfg.seed}</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;max-width:1000px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:4px 10px}}
td{{text-align:right}}th{{text-align:left}}tr.bad td:last-child{{color:#b00020;font-weight:bold}}
figure{{margin:1.5em 0}}
</style></head><body>
<h1>Parley against a naive collector</h1>
<p>{cfg.borrowers} borrowers ({pf['loans']} loans) over {cfg.days} days from {cfg.start.isoformat()},
seed {cfg.seed}; {pf['agents']} collectors with {pf['capacity']} calls a day each, in both runs.
The same borrowers behave the same way in both runs; every contact of both runs is judged by
the same gate on the true facts at that moment.</p>
<table><tr><th></th><th>Parley</th><th>Naive</th></tr>{rows}</table>
<figure>{c['violations']}</figure>
<figure>{c['recovery']}</figure>
<figure>{c['contacts']}</figure>
<figure>{c['agreements']}</figure>
<h2>What the gate refused in the Parley run, by rule</h2><ul>{denials}</ul>
<h2>What ran for real</h2><ul>{services}</ul>
<h2>Portfolio</h2><p>Where borrowers live: {_esc(pf['where'])}. Behaviour profiles: {_esc(pf['profiles'])}.</p>
</body></html>
"""


def write_html(result: Any, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    path = directory / f"simulation-{cfg.borrowers}x{cfg.days}-seed{cfg.seed}.html"
    path.write_text(html_report(result), encoding="utf-8")
    return path
