"""Scenario parsing (`parley gate check`) and the Typer command."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

import parley.faces.cli.gate as cli
from parley.core.content import ContentHit, ContentScreening
from parley.errors import InvalidInput
from parley.services.gate_check import check_scenario

BASE = {
    "pack": "US",
    "person": {"role": "borrower", "phones": ["+12125550100"], "emails": ["ann@example.com"],
               "address": {"country": "US", "region": "NY"}, "flags": [], "opt_outs": []},
    "debts": ["D1"],
    "history": [{"at": "2026-03-02T10:00:00-05:00", "channel": "call", "to": "+12125550100",
                 "debt": "D1", "result": "conversation"}],
    "agreements": [],
    "request": {"at": "2026-03-10T10:00:00-04:00", "channel": "call", "to": "+12125550100",
                "debt": "D1", "purpose": "collection"},
}


def scenario(**changes):
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        obj = doc
        keys = path.split("__")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        obj[keys[-1]] = value
    return doc


def test_allowed_scenario():
    out = check_scenario(scenario(), None)
    assert out["decision"] == "allow"
    assert out["next_allowed_at"] == "2026-03-10T10:00:00-04:00"


def test_denied_scenario_names_rule_and_next_time():
    out = check_scenario(scenario(request__at="2026-03-05T10:00:00-05:00"), None)
    assert out["decision"] == "deny"
    assert "us.after-conversation" in [r["rule"] for r in out["reasons"] if r["effect"] == "deny"]
    assert out["next_allowed_at"] == "2026-03-09T08:00:00-04:00"


def test_agreement_and_flags_in_the_scenario():
    doc = scenario(agreements=[{"debt": "D1", "status": "active", "starts_on": "2026-03-01",
                                "ends_on": "2026-09-01"}])
    assert check_scenario(doc, None)["decision"] == "deny"
    doc = scenario(person__flags=["dispute"])
    assert check_scenario(doc, None)["next_allowed_at"] is None


def test_text_without_screener_is_denied_and_with_screener_is_judged():
    doc = scenario(request__channel="sms", request__text="Please call us back")
    assert check_scenario(doc, None)["decision"] == "deny"
    assert check_scenario(doc, lambda t: ContentScreening("v1"))["decision"] == "allow"
    out = check_scenario(doc, lambda t: ContentScreening("v1", (ContentHit("threat", "x", "x"),)),
                         lang="zh-Hans")
    assert out["decision"] == "deny" and any(r["message"].startswith("禁止") for r in out["reasons"])


def test_third_party_scenario_with_borrower_block():
    doc = scenario(person={"id": "M1", "role": "third_party", "phones": ["+12125550199"],
                           "timezone": "America/New_York"},
                   borrower={"id": "B1", "phones": [{"number": "+12125550100", "valid": False}]},
                   history=[],
                   request={"at": "2026-03-10T10:00:00-04:00", "channel": "call",
                            "to": "+12125550199", "debt": "D1", "purpose": "location"})
    assert check_scenario(doc, None)["decision"] == "allow"


@pytest.mark.parametrize("changes,field", [
    ({"request__at": "2026-03-10T10:00:00"}, "request.at"),
    ({"request__at": "yesterday"}, "request.at"),
    ({"request__channel": "pigeon"}, "request.channel"),
    ({"request__purpose": "fun"}, "request.purpose"),
    ({"request__debt": "D9"}, "request.debt"),
    ({"request__to": "+19999999999"}, "request.to"),
    ({"history__0__result": "maybe"}, "history[0].result"),
    ({"history__0__at": 5}, "history[0].at"),
    ({"person__flags": ["grumpy"]}, "person.flags[0]"),
    ({"person__timezone": "Mars/Base"}, "person.timezone"),
    ({"person__timezone": "x" * 10_000}, "person.timezone"),  # was OSError: file name too long
    ({"agreements": [{"debt": "D1", "status": "active", "starts_on": "soon"}]},
     "agreements[0].starts_on"),
    ({"pack": "ZZ"}, "pack"),
    ({"person": "ann"}, "person"),
    ({"person__opt_outs": [{"channel": "sms", "since": "last week"}]}, "person.opt_outs[0].since"),
    ({"debts": [{"id": "D1", "oldest_unpaid_due_on": "soon"}]}, "debts[0].oldest_unpaid_due_on"),
    ({"debts": [{"id": "D1", "oldest_unpaid_due_on": "2026-02-01"}, "D2"]},
     "debts[1].oldest_unpaid_due_on"),
])
def test_malformed_fields_are_named(changes, field):
    with pytest.raises(InvalidInput) as err:
        check_scenario(scenario(**changes), None)
    assert err.value.field == field


@pytest.mark.parametrize("pack", ["x" * 100_000, "US\u0000", "../US", "US.yaml", "U S", "-US",
                                  "A" * 33, "", None, 7])
def test_a_pack_id_that_cannot_name_a_pack_is_refused_before_the_file_system(pack):
    from parley.services.gate_check import UnknownPack, load_pack

    with pytest.raises(InvalidInput) as err:
        check_scenario(scenario(pack=pack), None)
    assert err.value.field == "pack" and len(err.value.message) < 200
    if isinstance(pack, str) and pack:
        with pytest.raises(UnknownPack):
            load_pack(pack)


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-12:00", "9998-12-31T23:59:59-12:00",
                                "9001-01-01T00:00:00+00:00", "0001-01-01T00:00:00+14:00",
                                "1969-12-31T23:59:59+00:00"])
@pytest.mark.parametrize("field", ["request.at", "history[0].at", "person.opt_outs[0].since"])
def test_an_instant_outside_the_years_1970_to_9000_is_named(at, field):
    doc = scenario(person__opt_outs=[{"channel": "email", "since": "2026-01-01T00:00:00Z"}])
    {"request.at": doc["request"], "history[0].at": doc["history"][0],
     "person.opt_outs[0].since": doc["person"]["opt_outs"][0]}[field][field.rsplit(".", 1)[1]] = at
    with pytest.raises(InvalidInput) as err:
        check_scenario(doc, None)
    assert err.value.field == field and "1970 to 9000" in err.value.message


@pytest.mark.parametrize("at", ["1970-01-01T00:00:00+14:00", "9000-12-31T23:59:59-12:00"])
def test_the_ends_of_the_instant_range_are_decided(at):
    doc = scenario(history=[], request__at=at)
    assert check_scenario(doc, None)["decision"] in ("allow", "deny")
    doc["person"]["flags"] = ["dispute"]  # no time will do: the whole horizon is searched
    assert check_scenario(doc, None)["next_allowed_at"] is None


def test_a_debt_with_nothing_overdue_in_the_scenario():
    """Standing given: paid up → deny with no time; overdue → allowed. Not given → not judged."""
    paid = scenario(debts=[{"id": "D1", "oldest_unpaid_due_on": None}])
    out = check_scenario(paid, None)
    assert out["decision"] == "deny" and out["next_allowed_at"] is None
    assert "us.nothing-overdue" in [r["rule"] for r in out["reasons"] if r["effect"] == "deny"]
    due_later = scenario(debts=[{"id": "D1", "oldest_unpaid_due_on": "2026-03-10"}])
    assert check_scenario(due_later, None)["decision"] == "deny"  # due today is not overdue
    overdue = scenario(debts=[{"id": "D1", "oldest_unpaid_due_on": "2026-02-01"}])
    assert check_scenario(overdue, None)["decision"] == "allow"
    assert "us.nothing-overdue" not in [r["rule"] for r in check_scenario(scenario(), None)["reasons"]]


def test_a_reply_to_a_message_through_an_opted_out_medium_in_a_scenario():
    doc = scenario(person__opt_outs=[{"channel": "sms", "since": "2026-03-01T09:00:00-05:00"}],
                   history=[], request__channel="sms")
    assert check_scenario(doc, None)["decision"] == "deny"
    doc["history"] = [{"at": "2026-03-09T18:00:00-04:00", "channel": "sms",
                       "to": "+12125550100", "debt": "D1", "result": None,
                       "initiated_by": "consumer"}]
    out = check_scenario(doc, None)
    assert out["decision"] == "allow"
    assert {"rule": "us.opt-out", "effect": "allow"}.items() <= next(
        r for r in out["reasons"] if r["rule"] == "us.opt-out").items()


def test_cli_prints_decision_json(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_screener", lambda: None)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario()), encoding="utf-8")
    res = CliRunner().invoke(cli.app, ["check", str(path), "--lang", "zh-Hant"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["decision"] == "allow" and set(out) >= {"reasons", "next_allowed_at", "flags"}


def test_cli_malformed_scenario_exits_2_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_screener", lambda: None)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario(request__at="noon")), encoding="utf-8")
    res = CliRunner().invoke(cli.app, ["check", str(path)])
    assert res.exit_code == 2
    assert "request.at" in res.stderr
    path.write_text("{not json", encoding="utf-8")
    assert CliRunner().invoke(cli.app, ["check", str(path)]).exit_code == 2
