"""The agreements service's notices (agreement.broken, agreement.cancelled) are default templates:
seeded and screened with the others in three locales. A database seeded before they joined the
defaults still gets them the first time a notice is queued, and a stored version is never
replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from parley.services import agreements as ag
from parley.services.context import Context
from parley.services.templates import (
    DEFAULTS,
    ensure_default_template,
    get_template,
    list_templates,
    save_template,
    seed_default_templates,
)
from parley.store.models.queue import ContactQueueItem
from tests.integration.test_agreements import load, propose_and_accept


def _latest(ctx: Context, template_id: str) -> dict[str, int]:
    return {t.locale: t.version for t in list_templates(ctx) if t.id == template_id}


def test_the_notices_are_among_the_defaults_in_every_locale() -> None:
    ids = {d[0]: d for d in DEFAULTS}
    for notice in ag.NOTICES:
        assert notice in ids
        _, channel, _, bodies = ids[notice]
        assert channel == "sms" and set(bodies) == {"zh-Hans", "zh-Hant", "en"}


def test_seeding_stores_and_screens_the_notices_with_the_others(ctx: Context) -> None:
    seed_default_templates(ctx)
    seeded = {(t.id, t.locale) for t in list_templates(ctx)}
    for notice in ag.NOTICES:
        assert {(notice, loc) for loc in ("zh-Hans", "zh-Hant", "en")} <= seeded
    with ctx.db.read() as conn:
        t = get_template(conn, "agreement.cancelled", "zh-Hant")
    assert t.channel == "sms" and "還款協議已取消" in t.body and t.lexicon_version


def test_cancelling_uses_the_seeded_template_and_never_replaces_an_edited_one(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    seed_default_templates(ctx)
    edited = save_template(ctx, "agreement.cancelled", "en", "sms",
                           "Hello {name}, your plan for loan {loan_id} was cancelled: {portal_url}")
    a = propose_and_accept(ctx)
    ag.cancel(ctx, a["id"], by="C7", reason="borrower asked")
    assert _latest(ctx, "agreement.cancelled") == {"zh-Hans": 1, "zh-Hant": 1, "en": edited.version}
    with ctx.db.read() as conn:
        notice = conn.execute(select(ContactQueueItem.template_id, ContactQueueItem.purpose).where(
            ContactQueueItem.template_id == "agreement.cancelled")).all()
    assert notice == [("agreement.cancelled", "agreement_service")]


def test_without_seeding_the_first_notice_stores_only_the_missing_locales(
        ctx: Context, tmp_path: Path) -> None:
    load(ctx, tmp_path)
    save_template(ctx, "agreement.cancelled", "zh-Hans", "sms", "{name}您好，借款 {loan_id} 的还款协议已取消。")
    a = propose_and_accept(ctx)
    ag.cancel(ctx, a["id"], by="C7", reason="borrower asked")
    assert _latest(ctx, "agreement.cancelled") == {"zh-Hans": 1, "zh-Hant": 1, "en": 1}
    with ctx.db.read() as conn:
        assert get_template(conn, "agreement.cancelled", "zh-Hans").body.endswith("已取消。")  # kept
        assert "has been cancelled" in get_template(conn, "agreement.cancelled", "en").body
    assert _latest(ctx, "agreement.broken") == {}  # nothing stored that was not needed
    with ctx.db.transaction() as conn:
        assert ensure_default_template(ctx, conn, "agreement.broken") == 3
        assert ensure_default_template(ctx, conn, "agreement.broken") == 0
        with pytest.raises(KeyError):
            ensure_default_template(ctx, conn, "no.such.default")


def test_a_default_is_stored_alike_whether_seeded_or_ensured_for_a_notice(ctx: Context) -> None:
    """Seeding is ensure_default_template for each default: same name, same screening."""
    from parley.store.models.templates import Template

    seed_default_templates(ctx)
    assert seed_default_templates(ctx) == 0  # nothing missing: nothing added
    with ctx.db.read() as conn:
        rows = conn.execute(select(Template.id, Template.name)).all()
    assert rows and all(name == tid for tid, name in rows)
