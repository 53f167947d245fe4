"""A permit says what is sent and is granted once per request: an idempotency key given again
with another request (another channel, text, person…) is a Conflict, never the old permit for
an unscreened message (invariant 8); an SMS or e-mail with no text and no stored template is
refused by name, never recorded with empty content (invariant 7)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from parley.adapters.channels.console import ConsoleProvider
from parley.errors import Conflict, InvalidInput
from parley.services.context import Context
from parley.services.permits import PermitRequest, request_permit
from parley.services.templates import seed_default_templates
from parley.services.worker import LEASE, SimulatedCrash, work_once
from parley.store.models.contacts import AuditLog, ContactAttempt
from tests.integration.test_permits import call, loan_id, seed_borrower
from tests.integration.test_worker import attempts_by_key, crash_at, items, prepare
from tests.integration.web_data import World

PERMITS = "/api/v1/gate/permits"


@pytest.fixture
def api(web: TestClient) -> TestClient:
    return web


def key(world: World) -> dict[str, str]:
    return {"X-API-Key": world.keys["lender"]}


def written(ctx: Context) -> tuple[int, int]:
    """(contact attempts, audit entries): what a refused request must leave as it found."""
    with ctx.db.read() as conn:
        return (int(conn.execute(select(func.count()).select_from(ContactAttempt)).scalar_one()),
                int(conn.execute(select(func.count()).select_from(AuditLog)).scalar_one()))


# --- a key is one request ----------------------------------------------------------------------


def test_a_key_reused_for_an_sms_with_a_threat_is_409_and_sends_nothing(api: TestClient, world: World) -> None:
    first = api.post(PERMITS, headers=key(world),
                     json={"loan_id": "L1", "channel": "call", "idempotency_key": "k1"})
    assert first.status_code == 200 and first.json()["allowed"] is True, first.text
    before = written(world.ctx)
    r = api.post(PERMITS, headers=key(world),
                 json={"loan_id": "L1", "channel": "sms", "text": "Pay now or I will kill you",
                       "idempotency_key": "k1"})
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "channel" in message and "text" in message and "kill" not in message
    assert written(world.ctx) == before


def test_a_key_reused_with_other_text_is_409_and_the_same_request_gets_the_same_permit(
        api: TestClient, world: World) -> None:
    body = {"loan_id": "L1", "channel": "sms", "text": "您好，请按时还款。", "idempotency_key": "k2"}
    first = api.post(PERMITS, headers=key(world), json=body).json()
    assert first["allowed"] is True and first["attempt_id"]
    before = written(world.ctx)
    again = api.post(PERMITS, headers=key(world), json=body)
    assert again.status_code == 200
    assert (again.json()["attempt_id"], again.json()["decision_id"]) == (
        first["attempt_id"], first["decision_id"])
    other = api.post(PERMITS, headers=key(world), json={**body, "text": "再不还钱就去你家门口曝光你"})
    assert other.status_code == 409 and "text" in other.json()["error"]["message"]
    assert written(world.ctx) == before


@pytest.mark.parametrize(("change", "named"), [
    ({"channel": "sms", "text": "您好，请按时还款。"}, "channel"),
    ({"purpose": "location"}, "purpose"),
    ({"loan_id": loan_id("B1", "L2")}, "loan_id"),
    ({"to": "+8613700137000"}, "to"),
    ({"template_id": "m1_reminder"}, "template_id"),
    ({"collector_id": "C8"}, "collector_id"),
    ({"agency_id": "A2"}, "agency_id"),
    ({"badge": "B-008"}, "badge"),
])
def test_a_key_reused_for_another_request_is_a_conflict_naming_what_differs(
        ctx: Context, change: dict[str, Any], named: str) -> None:
    seed_borrower(ctx, "B1", loans=("L1", "L2"))
    first = request_permit(ctx, call(idempotency_key="q-1"))
    assert first.allowed
    before = written(ctx)
    with pytest.raises(Conflict) as exc:
        request_permit(ctx, call(idempotency_key="q-1", **change))
    assert named in str(exc.value)
    assert written(ctx) == before


def test_a_key_reused_for_a_third_party_or_another_number_is_a_conflict(ctx: Context) -> None:
    tp = seed_borrower(ctx, "B1", third_party_phone="+8613900139000")
    assert request_permit(ctx, call(idempotency_key="q-2")).allowed
    before = written(ctx)
    with pytest.raises(Conflict) as exc:
        request_permit(ctx, call(idempotency_key="q-2", third_party_id=tp, purpose="location"))
    assert "third_party_id" in str(exc.value)
    with pytest.raises(Conflict) as exc:  # the person's default number, then named
        request_permit(ctx, call(idempotency_key="q-2", to="+86 138 0013 8000"))
    assert "to" in str(exc.value)
    assert written(ctx) == before
    named = request_permit(ctx, call(idempotency_key="q-3", to="+8613800138000"))
    again = request_permit(ctx, call(idempotency_key="q-3", to="+86 138 0013 8000"))  # same number
    assert again.repeated and again.attempt_id == named.attempt_id


def test_a_queue_item_composed_again_from_its_template_is_the_same_request(ctx: Context) -> None:
    seed_borrower(ctx, "B1")
    item: dict[str, Any] = {"channel": "sms", "template_id": "early_reminder", "queue_item_id": 7,
            "idempotency_key": "queue:7", "initiated_by": "system"}
    first = request_permit(ctx, call(text="王伟您好，已逾期 3 天。", **item))
    again = request_permit(ctx, call(text="王伟您好，已逾期 4 天。", **item))
    assert again.repeated and again.attempt_id == first.attempt_id
    with pytest.raises(Conflict):  # not a queue item: the text is the request
        request_permit(ctx, call(text="王伟您好，已逾期 4 天。",
                                 **{**item, "queue_item_id": None}))


def test_the_worker_retrying_a_crashed_item_a_day_later_still_sends_it_once(ctx: Context) -> None:
    prepare(ctx, dpd=3)  # m1_early: one sms, "逾期 3 天"
    console = ConsoleProvider(StringIO())
    with pytest.raises(SimulatedCrash):
        work_once(ctx, "w1", 10, channels={"sms": console}, fault=crash_at("after_permit"))
    (item_id,) = items(ctx)
    ctx.clock.advance(timedelta(days=1) + LEASE)
    report = work_once(ctx, "w2", 10, channels={"sms": console})
    assert report.sent == 1 and "逾期 4 天" in console.messages[0].body
    assert attempts_by_key(ctx) == {f"queue:{item_id}": 1}


# --- an SMS or e-mail says what it sends -------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"channel": "sms"}, "text"),
    ({"channel": "sms", "text": ""}, "text"),
    ({"channel": "sms", "text": " \n\t "}, "text"),
    ({"channel": "email", "text": "   "}, "text"),
    ({"channel": "sms", "template_id": "no_such_template"}, "template_id"),
    ({"channel": "sms", "text": "您好，请按时还款。", "template_id": "no_such_template"}, "template_id"),
])
def test_an_sms_or_email_without_content_is_422_naming_the_field_and_writes_nothing(
        api: TestClient, world: World, body: dict[str, Any], field: str) -> None:
    before = written(world.ctx)
    r = api.post(PERMITS, headers=key(world), json={"loan_id": "L1", "idempotency_key": "k3", **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert written(world.ctx) == before


def test_an_sms_from_a_stored_template_is_recorded_with_the_template(api: TestClient, world: World) -> None:
    seed_default_templates(world.ctx)
    r = api.post(PERMITS, headers=key(world),
                 json={"loan_id": "L1", "channel": "sms", "template_id": "m1_reminder", "text": " "})
    assert r.status_code == 200 and r.json()["allowed"] is True, r.text
    with world.ctx.db.read() as conn:
        row = conn.execute(text("SELECT template_id, content FROM contact_attempt WHERE id = :id"),
                           {"id": r.json()["attempt_id"]}).one()
    assert tuple(row) == ("m1_reminder", "")


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_the_permit_itself_refuses_a_message_with_nothing_in_it(ctx: Context,
                                                                 blank: str | None) -> None:
    seed_borrower(ctx, "B1", email="wang@example.cn")
    for channel in ("sms", "email"):
        with pytest.raises(InvalidInput) as exc:
            request_permit(ctx, PermitRequest(borrower_id="B1", channel=channel,
                                              purpose="collection", loan_id=loan_id("B1"),
                                              text=blank))
        assert exc.value.field == "text"
    assert written(ctx) == (0, 0)
