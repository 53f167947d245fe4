"""A harassment complaint's hold when the borrower's jurisdiction has no rule pack (placed:
failing towards protecting the borrower), and when it has a broken one (the complaint is
refused, not guessed at). What tells the two apart is load_pack's UnknownPack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from parley.errors import InvalidInput
from parley.services import gate_check
from parley.services.auth import Actor
from parley.services.complaints import file_complaint
from parley.services.context import Context
from parley.services.gate_check import UnknownPack, load_pack, pack_or_default
from parley.store.models.contacts import Hold
from parley.store.models.web import Complaint
from tests.integration.test_permits import seed_borrower

NO_PACK = "ZZ"  # a jurisdiction no pack is shipped for


@pytest.fixture
def packs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, Any]]]:
    """Extra pack documents by id, read as if they were files in parley/packs."""
    extra: dict[str, dict[str, Any]] = {}
    read = gate_check._read_pack_doc
    monkeypatch.setattr(gate_check, "_read_pack_doc",
                        lambda pack_id: extra[pack_id] if pack_id in extra else read(pack_id))
    load_pack.cache_clear()
    pack_or_default.cache_clear()
    yield extra
    load_pack.cache_clear()
    pack_or_default.cache_clear()


def _broken(pack_id: str) -> dict[str, Any]:
    """A real pack under another id, with one rule no pack may have."""
    doc = dict(gate_check._read_pack_doc("CN"), id=pack_id)
    doc["rules"] = [*doc["rules"], {"id": "zz.nonsense", "kind": "no_such_kind", "params": {}}]
    return doc


def _file_harassment(ctx: Context, borrower_id: str) -> str:
    return file_complaint(ctx, Actor("borrower", borrower_id, "borrower"), category="harassment",
                          description="they called me names")


def _holds(ctx: Context) -> list[tuple[str, str, str | None]]:
    with ctx.db.read() as conn:
        return [tuple(r) for r in conn.execute(select(Hold.borrower_id, Hold.kind, Hold.complaint_id))]


def test_a_harassment_complaint_with_no_pack_for_the_jurisdiction_is_filed_and_holds_collection(
        ctx: Context) -> None:
    seed_borrower(ctx, "B1", jurisdiction=NO_PACK)
    with pytest.raises(UnknownPack):
        load_pack(NO_PACK)
    cid = _file_harassment(ctx, "B1")
    assert _holds(ctx) == [("B1", "complaint_investigation", cid)]
    with ctx.db.read() as conn:
        complaint = conn.execute(select(Complaint.status, Complaint.hold_id)).one()
    assert complaint.status == "open" and complaint.hold_id is not None


def test_a_broken_pack_for_the_jurisdiction_refuses_the_complaint_rather_than_guess_its_hold(
        ctx: Context, packs: dict[str, dict[str, Any]]) -> None:
    packs[NO_PACK] = _broken(NO_PACK)
    seed_borrower(ctx, "B1", jurisdiction=NO_PACK)
    with pytest.raises(InvalidInput) as err:
        _file_harassment(ctx, "B1")
    assert not isinstance(err.value, UnknownPack) and err.value.record == f"pack {NO_PACK}"
    assert _holds(ctx) == []
    with ctx.db.read() as conn:
        assert conn.execute(select(Complaint.id)).all() == []


def test_load_pack_tells_an_unknown_pack_from_a_broken_one(packs: dict[str, dict[str, Any]]) -> None:
    for unknown in (NO_PACK, "no.such/pack"):
        with pytest.raises(UnknownPack):
            load_pack(unknown)
    packs["ZB"] = _broken("ZB")
    packs["ZP"] = dict(gate_check._read_pack_doc("US-MA"), id="ZP", extends="NOPE")
    for broken, field in (("ZB", ""), ("ZP", "extends")):
        with pytest.raises(InvalidInput) as err:
            load_pack(broken)
        assert not isinstance(err.value, UnknownPack), broken
        assert err.value.record == f"pack {broken}"
        if field:
            assert err.value.field == field
    assert "extends unknown pack 'NOPE'" in str(pytest.raises(InvalidInput, load_pack, "ZP").value)


def test_other_pack_fallbacks_take_the_default_only_when_there_is_no_pack(
        packs: dict[str, dict[str, Any]]) -> None:
    """The daily run's lawful hours and the visit's collector count use the default pack for
    a jurisdiction without one, and refuse to guess for a broken one."""
    from parley.services.appointments import collectors_required
    from parley.services.daily_run import lawful_hours

    assert lawful_hours(NO_PACK, "call", "CN") == lawful_hours("CN", "call", "CN")
    assert collectors_required(NO_PACK, "visit", "CN") == collectors_required("CN", "visit", "CN")
    packs[NO_PACK] = _broken(NO_PACK)
    load_pack.cache_clear()
    pack_or_default.cache_clear()
    for fallback in (lambda: lawful_hours(NO_PACK, "call", "CN"),
                     lambda: collectors_required(NO_PACK, "visit", "CN")):
        with pytest.raises(InvalidInput) as err:
            fallback()
        assert not isinstance(err.value, UnknownPack)
