"""Synthetic loan-book files for tests and benchmarks (deterministic for a seed)."""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

BORROWER_COLUMNS = ["borrower_id", "name", "phone", "phone_type", "email", "language", "contact_name", "contact_relation", "contact_phone"]
LOAN_COLUMNS = ["loan_id", "borrower_id", "currency", "principal", "annual_rate", "term", "method", "disbursed_on", "first_due_on", "day_count", "product"]
METHODS = ["equal-installment", "equal-principal", "interest-only"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


def cn_mobile(i: int) -> str:
    # 138/139/150/186 prefixes with a deterministic tail: all valid China Mobile/Unicom numbers.
    prefix = ("138", "139", "150", "186")[i % 4]
    return f"+86{prefix}{i % 100_000_000:08d}"


def write_borrowers(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(BORROWER_COLUMNS)
        for i in range(n):
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            w.writerow([f"B{i:07d}", name, cn_mobile(i), "mobile", f"b{i}@example.cn", rng.choice(["zh-Hans", "zh-Hans", "zh-Hant", "en"]),
                        rng.choice(SURNAMES) + rng.choice(GIVEN), "emergency_contact", cn_mobile(i + 50_000_000)])


def write_loans(path: Path, n: int, borrowers: int, seed: int = 2, start: date = date(2025, 6, 1)) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LOAN_COLUMNS)
        for i in range(n):
            disbursed = start + timedelta(days=rng.randrange(0, 240))
            term = rng.choice([3, 6, 6, 9, 12, 12, 12, 24])
            principal = rng.choice([500, 1000, 2000, 3000, 5000, 8000, 10000, 20000]) * 100 + rng.randrange(0, 100)
            rate = f"{rng.choice([7.2, 9.4822, 12.0, 15.4, 18.25, 23.99, 24.0]):.4f}".rstrip("0").rstrip(".")
            w.writerow([f"L{i:08d}", f"B{rng.randrange(borrowers):07d}", "CNY", f"{principal // 100}.{principal % 100:02d}", rate, term,
                        rng.choice(METHODS), disbursed.isoformat(), (disbursed + timedelta(days=30)).isoformat(),
                        rng.choice(["30/360", "actual/365", "actual/360"]), rng.choice(["cash", "consumer", "sme"])])
