"""The pages in a real browser: Debian's Chromium driven by Playwright against a real server
(uvicorn in a thread, SQLite file, a fixed clock at Monday 10:00 in Shanghai).

One story, in order, on one world: a collector signs in, opens a case from the queue, asks
"may I call now?", calls, logs the outcome and proposes a plan; the borrower signs in with a
one-time code, sees what they owe and why, accepts the plan, sees the contact with the
collector's name and badge, and presses "I was contacted after my agreement"; the compliance
officer (password + TOTP) sees that complaint with its evidence and verifies the audit log; an
agency collector cannot open another agency's case. Screenshots go to docs/screenshots/.

Without Chromium these tests skip with how to enable them (`make browser`); under CI they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from parley.faces.api.app import create_app
from tests.conftest import IN_CI, make_ctx
from tests.integration.web_data import PASSWORD, PHONE_B1, World, build_world, queue_item

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _chromium() -> str:
    for candidate in (os.environ.get("PARLEY_CHROMIUM", ""), "/usr/bin/chromium",
                      shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    message = ("Debian's Chromium is not installed: run `make browser` (apt-get install chromium "
               "fonts-noto-cjk) to enable the browser tests")
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
          chromium_path: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("e2e")
    db = tmp / "parley.db"
    shutil.copyfile(sqlite_template, db)
    ctx = make_ctx(f"sqlite:///{db}")
    w = build_world(ctx, tmp)
    queue_item(ctx, "L1", "B1", w.staff["collector"], 10, "e2e-1")
    from parley.services.delinquency import snapshot

    snapshot(ctx, ctx.today())  # buckets and days past due, as the daily run leaves them
    yield w
    ctx.db.dispose()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    app = create_app(world.ctx, otp_sender=world.send)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _page(browser, server: str, lang: str = "zh-Hans"):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=server, locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    if lang != "zh-Hans":
        page.goto("/signin")
        page.select_option("select[name=lang]", lang)
        page.click("header form[action='/lang'] button")
    return page


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _staff_sign_in(page, world: World, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/signin")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/signin'] button[type=submit]")
    if "/signin/totp" in page.url:
        import pyotp

        page.fill("input[name=code]", pyotp.TOTP(world.totp[username]).at(world.ctx.clock.now()))
        page.click("form[action='/signin/totp'] button[type=submit]")


@pytest.mark.browser
@pytest.mark.slow
def test_a_collector_signs_in_calls_logs_the_outcome_and_proposes_a_plan(browser, server, world) -> None:
    page = _page(browser, server)
    _staff_sign_in(page, world, "collector")
    page.wait_for_url(re.compile(r"/workbench$"))
    assert page.locator("#queue").get_by_text("王伟").is_visible()
    assert page.locator("#queue").get_by_text("M5").is_visible()  # 121 days past due
    _shot(page, "workbench")
    page.locator("#queue a", has_text="王伟").click()
    page.wait_for_url(re.compile(r"/cases/L1$"))
    assert page.get_by_text("+86138****8000").is_visible()
    page.get_by_role("button", name="现在可以打吗？").click()
    page.wait_for_selector("#gate-result")
    assert page.locator("#gate-result").get_attribute("data-allowed") == "yes"
    page.get_by_role("button", name="拨打").click()
    page.wait_for_selector("#call-in-progress")
    page.select_option("#call-panel select[name=result]", "conversation")
    page.check("#call-panel input[name=promise]")
    page.fill("#call-panel textarea[name=notes]", "同意分期")
    page.get_by_role("button", name="记录结果").click()
    page.wait_for_selector("#outcome-logged")
    page.fill("#plans input[name=monthly]", "2000")
    page.get_by_role("button", name="计算方案").click()
    row = page.locator("tr[data-plan='installment_plan/arrears']")
    row.wait_for()
    _shot(page, "case")
    row.get_by_role("button", name="提出").click()
    page.wait_for_selector("#proposed")
    page.reload()
    assert page.locator("#contacts").get_by_text("已与借款人通话").is_visible()
    world.ctx.clock.advance(timedelta(hours=1))  # the borrower signs in an hour later


@pytest.mark.browser
@pytest.mark.slow
def test_a_borrower_signs_in_with_a_code_sees_what_they_owe_accepts_and_complains(browser, server, world) -> None:
    page = _page(browser, server)
    page.goto("/portal/signin")
    page.fill("input[name=phone]", "13800138000")
    page.click("form[action='/portal/signin/code'] button")
    page.wait_for_selector("input[name=code]")
    e164, code = world.codes[-1]
    assert e164 == PHONE_B1
    page.fill("input[name=code]", code)
    page.click("form[action='/portal/signin/verify'] button")
    page.wait_for_url(re.compile(r"/portal$"))
    owed = page.locator("#loan-L1 [data-testid=overdue-total]").inner_text()
    assert "5,500.80" in owed
    assert page.get_by_text("年利率：每年 18%。").is_visible()
    _shot(page, "portal")
    page.locator("#agreements").get_by_role("button", name="接受").click()
    page.wait_for_selector("#accepted")
    page.reload()
    contacts = page.locator("#contacts")
    assert contacts.get_by_text("Collector").is_visible() and contacts.get_by_text("C-1001").is_visible()
    assert page.locator("#agreements").get_by_text("生效中").is_visible()
    page.click("#contacted-after")
    page.wait_for_selector("#complaint-filed")
    assert page.locator("#complaints").get_by_role("cell", name="达成协议后仍被联系").is_visible()
    _shot(page, "portal-after-complaint")


@pytest.mark.browser
@pytest.mark.slow
def test_the_compliance_officer_sees_the_complaint_its_evidence_and_verifies_the_audit_log(browser, server, world) -> None:
    page = _page(browser, server, lang="en")
    _staff_sign_in(page, world, "compliance")
    page.wait_for_url(re.compile(r"/desk$"))
    page.locator("#complaints table a").first.click()
    page.wait_for_selector("#evidence")
    _shot(page, "complaint")
    page.goto("/desk")
    page.get_by_role("button", name="Verify the audit log").click()
    page.wait_for_selector("#audit-result")
    assert "verifies" in page.locator("#audit-result").inner_text()
    _shot(page, "desk")


@pytest.mark.browser
@pytest.mark.slow
def test_the_desk_draws_its_charts_with_the_numbers_beside_them(browser, server, world) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from parley.services.payments import post_payment
    from parley.store.models.contacts import ContactAttempt

    contacts = [
        {"borrower_id": b, "loan_id": loan, "person_role": "borrower", "channel": ch,
         "purpose": "collection", "at": datetime(2026, 2, day, 2 + i, 0, tzinfo=UTC),
         "collector_id": world.staff["collector"] if ch == "call" else None,
         "result": ("conversation" if i % 2 else "no_answer") if ch == "call" else None}
        for day in range(17, 29, 2) for i, (b, loan, ch) in enumerate(
            [("B1", "L1", "call"), ("B2", "L2", "sms"), ("B2", "L2", "call"), ("B1", "L1", "email")][: 1 + day % 4])
    ]
    with world.ctx.db.transaction() as conn:
        conn.execute(insert(ContactAttempt), contacts)
    post_payment(world.ctx, "e2e-pay-1", "L2", datetime(2026, 2, 25, 2, 0, tzinfo=UTC), 120000)
    world.ctx.clock.advance(timedelta(minutes=2))  # a fresh TOTP step: codes are accepted once
    page = _page(browser, server, lang="en")
    _staff_sign_in(page, world, "compliance")
    page.wait_for_url(re.compile(r"/desk$"))
    chart = page.locator("svg#chart-contacts")
    assert chart.is_visible() and chart.get_attribute("role") == "img"
    assert page.locator("svg#chart-contacts rect.bar").count() >= 6
    assert page.locator("#chart-contacts-title").text_content() == "Contacts per day by channel"
    assert page.locator("svg#chart-recovery-bucket rect.bar").count() == 1
    assert "1,200.00" in page.locator("#recovery-bucket").inner_text()
    assert page.locator("svg#chart-collectors").is_visible()
    assert page.locator("svg#chart-rates").is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#measures").screenshot(path=str(SHOTS / "desk-charts.png"))


@pytest.mark.browser
@pytest.mark.slow
def test_an_administrator_adds_a_collector_who_sets_a_password_and_signs_in(browser, server, world) -> None:
    page = _page(browser, server, lang="en")
    _staff_sign_in(page, world, "admin")
    page.wait_for_url(re.compile(r"/workbench$"))
    page.get_by_role("link", name="Staff").click()
    page.wait_for_url(re.compile(r"/admin/staff$"))
    form = page.locator("#new-staff form")
    form.locator("input[name=username]").fill("chen")
    form.locator("input[name=display_name]").fill("陈静")
    form.locator("select[name=role]").select_option("collector")
    form.locator("input[name=badge_number]").fill("C-2001")
    form.locator("input[name=languages][value=en]").check()
    form.locator("input[name=skills]").fill("negotiation")
    form.get_by_role("button", name="Create").click()
    link = page.locator("#reset-link")
    link.wait_for()
    assert page.locator("tr[data-username=chen]").get_by_text("C-2001").is_visible()
    _shot(page, "admin-staff")
    url = link.inner_text()
    newcomer = _page(browser, server, lang="en")
    newcomer.goto(url)
    newcomer.fill("input[name=password]", "chen's own passphrase")
    newcomer.fill("input[name=confirm]", "chen's own passphrase")
    newcomer.get_by_role("button", name="Set the password").click()
    newcomer.wait_for_selector("#password-set")
    newcomer.fill("input[name=username]", "chen")
    newcomer.fill("input[name=password]", "chen's own passphrase")
    newcomer.click("form[action='/signin'] button[type=submit]")
    newcomer.wait_for_url(re.compile(r"/workbench$"))
    assert newcomer.get_by_text("C-2001").is_visible()  # the badge in the header
    denied = newcomer.goto("/admin/staff")
    assert denied is not None and denied.status == 403  # collectors may not
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url(re.compile(r"/admin/api-keys$"))
    page.fill("#new-key-form input[name=name]", "lender core banking")
    page.get_by_role("button", name="Create").click()
    page.wait_for_selector("#new-key-value")
    assert page.locator("#new-key-value").inner_text().startswith("pk_")
    _shot(page, "admin-api-keys")


@pytest.mark.browser
@pytest.mark.slow
def test_an_agency_collector_cannot_open_another_agencys_case(browser, server, world) -> None:
    page = _page(browser, server, lang="en")
    _staff_sign_in(page, world, "agent")
    page.wait_for_url(re.compile(r"/workbench$"))
    other = page.goto("/cases/L2")
    missing_text = None
    assert other is not None and other.status == 404
    other_text = page.locator("main").inner_text().replace("L2", "X")
    missing = page.goto("/cases/L404")
    assert missing is not None and missing.status == 404
    missing_text = page.locator("main").inner_text().replace("L404", "X")
    assert other_text == missing_text


@pytest.mark.browser
@pytest.mark.slow
def test_an_administrator_recalls_a_placement_from_the_case_page(browser, server, world) -> None:
    world.ctx.clock.advance(timedelta(seconds=31))  # the administrator's last code was used
    page = _page(browser, server, lang="en")
    _staff_sign_in(page, world, "admin")
    page.wait_for_url(re.compile(r"/workbench$"))
    page.goto("/cases/L2")
    section = page.locator("#placements")
    assert section.get_by_text("Placed with agency A2.").is_visible()
    section.locator("input[name=reason]").fill("bringing it in-house")
    section.get_by_role("button", name="Recall from the agency").click()
    page.wait_for_url(re.compile(r"/cases/L2#placements$"))
    assert page.locator("#placements").get_by_text("Not placed with an agency.").is_visible()
    assert page.locator("#legal").get_by_text("No legal referrals.").is_visible()


def test_parley_serve_creates_the_schema_and_serves_pages_and_the_api(tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    env = {**os.environ, "PARLEY_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db", "PARLEY_ENV": "test"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley.faces.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as r:
                    doc = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "no output") from None
                time.sleep(0.2)
        assert '"/api/v1/loans/{loan_id}"' in doc
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/signin", timeout=5) as r:
            assert r.status == 200 and "员工登录" in r.read().decode()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "created the schema" in out
