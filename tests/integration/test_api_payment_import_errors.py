"""The API on input a parser trips over: each answer is a 422 naming the field (and, for an
import, the row), never a 500, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from parley.store.models.loanbook import Borrower, LedgerEntry, Payment
from tests.integration.loanbook_data import write_csv
from tests.integration.web_data import World


def key(world: World) -> dict[str, str]:
    return {"X-API-Key": world.keys["lender"]}


def written(world: World) -> tuple[int, int, int]:
    with world.ctx.db.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(m)).scalar_one()  # type: ignore[return-value]
                     for m in (Borrower, Payment, LedgerEntry))


@pytest.mark.parametrize("paid_at", [
    "2030-01-01T10:00:00+08:00",  # the future (the test clock is 2026-03-02T02:00Z)
    "2026-03-02T02:06:00Z",  # six minutes ahead: more than clock skew
    "2025-09-30T23:00:00+08:00",  # the day before L1 was disbursed
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+08:00",
    "9999-12-31T23:59:59-12:00",
])
def test_a_payment_at_an_impossible_time_is_a_422_naming_paid_at(web, world: World, paid_at: str) -> None:
    before = written(world)
    r = web.post("/api/v1/payments", headers=key(world),
                 json={"payment_id": "P-1", "loan_id": "L1", "paid_at": paid_at, "amount": "500.00"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "paid_at"
    assert written(world) == before


def upload(web, world: World, kind: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return web.post(f"/api/v1/imports/{kind}", headers=key(world), files={"file": (name, data, "text/plain")})


GOOD = {"borrower_id": "B3", "name": "张三", "phone": "+8613700137003"}


def _gbk(tmp: Path) -> tuple[str, bytes, tuple[str, str]]:
    data = write_csv(tmp / "b.csv", [GOOD, dict(GOOD, borrower_id="B4", name="李四")]).read_bytes()
    return "b.csv", data.replace("李四".encode(), "李四".encode("gbk")), ("b.csv row 2 (line 3)", "name")


def _utf16(tmp: Path) -> tuple[str, bytes, tuple[str, str]]:
    return "b.csv", write_csv(tmp / "b.csv", [GOOD]).read_text(encoding="utf-8").encode("utf-16"), ("b.csv", "")


def _long_field(tmp: Path) -> tuple[str, bytes, tuple[str, str]]:
    data = write_csv(tmp / "b.csv", [GOOD, dict(GOOD, borrower_id="B4", name="x" * 140_000)]).read_bytes()
    return "b.csv", data, ("b.csv row 2 (line 3)", "")


def _nul(tmp: Path) -> tuple[str, bytes, tuple[str, str]]:
    lines = [json.dumps(GOOD), json.dumps(dict(GOOD, borrower_id="B4", name="李\u0000四"))]
    return "b.jsonl", "\n".join(lines).encode(), ("b.jsonl row 2 (line 2)", "name")


def _twice(tmp: Path) -> tuple[str, bytes, tuple[str, str]]:
    line = '{"borrower_id": "B4", "name": "A", "phone": "+8613700137004", "name": "B"}'
    return "b.jsonl", (json.dumps(GOOD) + "\n" + line + "\n").encode(), ("b.jsonl row 2 (line 2)", "name")


@pytest.mark.parametrize("make", [_gbk, _utf16, _long_field, _nul, _twice],
                         ids=["gbk", "utf16", "long-field", "nul", "key-twice"])
def test_a_borrowers_file_a_parser_trips_over_is_a_422_naming_row_and_field(web, world: World, tmp_path: Path,
                                                                             make) -> None:  # type: ignore[no-untyped-def]
    name, data, (record, field) = make(tmp_path)
    before = written(world)
    r = upload(web, world, "borrowers", name, data)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["record"], err["field"]) == (record, field), err
    assert written(world) == before


@pytest.mark.parametrize("paid_at", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+08:00",
                                     "2030-01-01T00:00:00+08:00", "2025-01-01T00:00:00+08:00"])
def test_a_payments_file_with_an_impossible_time_is_a_422_naming_row_and_field(web, world: World, tmp_path: Path,
                                                                                paid_at: str) -> None:
    rows = [{"payment_id": "P-1", "loan_id": "L1", "paid_at": "2026-03-01T10:00:00+08:00", "amount": "1.00"},
            {"payment_id": "P-2", "loan_id": "L1", "paid_at": paid_at, "amount": "1.00"}]
    before = written(world)
    r = upload(web, world, "payments", "p.csv", write_csv(tmp_path / "p.csv", rows).read_bytes())
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["record"], err["field"]) == ("p.csv row 2 (line 3)", "paid_at"), err
    assert written(world) == before
