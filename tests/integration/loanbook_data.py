"""Small loan-book files for integration tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

BORROWERS = [
    {"borrower_id": "B1", "name": "王伟", "phone": "+8613800138000", "email": "wang@example.cn", "language": "zh-Hans",
     "contact_name": "王芳", "contact_relation": "family", "contact_phone": "+8613900139000", "address_country": "CN", "address_line": "北京市朝阳区1号"},
    {"borrower_id": "B2", "name": "Ann Lee", "phone": "+12125550123", "email": "ann@example.com", "language": "en", "timezone": "America/New_York",
     "jurisdiction": "US"},
]
LOANS = [
    {"loan_id": "L1", "borrower_id": "B1", "currency": "CNY", "principal": "1200.00", "annual_rate": "12", "term": "3",
     "method": "equal-principal", "disbursed_on": "2026-01-01", "first_due_on": "2026-02-01"},
    {"loan_id": "L2", "borrower_id": "B2", "currency": "USD", "principal": "100.00", "annual_rate": "9.4822", "term": "6",
     "method": "equal-installment", "disbursed_on": "2026-01-01", "first_due_on": "2026-02-01"},
]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def load_book(ctx, tmp_path: Path) -> None:
    from parley.services.imports import import_file

    import_file(ctx, "borrowers", write_csv(tmp_path / "borrowers.csv", BORROWERS))
    import_file(ctx, "loans", write_csv(tmp_path / "loans.csv", LOANS))
