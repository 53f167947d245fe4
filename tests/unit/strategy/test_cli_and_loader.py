"""`parley strategy validate FILE`, the YAML loader and the two bundled strategies."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.core.strategy import check_strategy, evaluate
from parley.errors import InvalidInput, InvalidInputs
from parley.faces.cli.strategy import app
from parley.services.strategy_sql import bundled_strategy_path, load_strategy, load_strategy_text

from .factories import AS_OF, account

runner = CliRunner()


@pytest.mark.parametrize("name", ["default", "challenger"])
def test_the_bundled_strategies_validate_without_warnings(name: str) -> None:
    strategy = load_strategy(bundled_strategy_path(name))
    assert strategy.id == name
    assert check_strategy(strategy) == ()


def test_the_default_strategy_escalates_from_sms_to_legal() -> None:
    s = load_strategy(bundled_strategy_path("default"))

    def kinds(**kw: object) -> set[str]:
        return {a.kind for a in evaluate(s, account(**kw), AS_OF).actions}

    assert kinds(days_past_due=3) == {"sms"}
    assert "call" in kinds(days_past_due=10)
    assert "interview" in kinds(days_past_due=70)
    assert "field_visit" in kinds(days_past_due=100, balance_minor=600_000)
    assert kinds(days_past_due=100, balance_minor=100_000) >= {"agency_placement"}
    assert "legal_referral" in kinds(days_past_due=200, balance_minor=600_000)
    assert kinds(days_past_due=200, tags=frozenset({"agreement_active"})) == set()


def test_validate_prints_a_summary_for_a_good_file() -> None:
    result = runner.invoke(app, ["validate", str(bundled_strategy_path("default"))])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 标准催收策略 (champion) v1, 11 states, 21 actions"


def test_validate_lists_every_error_with_its_path_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nname: Bad\nversion: 1\ncurrency: CNY\nstates:\n"
        "  - name: all\n    condition: {days_past_due_at_least: 1}\n"
        "    actions:\n      - kind: sms\n        template: t\n"
        "        timing: {preferred_hours: ['9-12'], days_of_week: [someday]}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "states[0].actions[0].timing.preferred_hours[0]" in result.stderr
    assert "states[0].actions[0].timing.days_of_week[0]" in result.stderr


def test_validate_prints_warnings_but_succeeds(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(
        "id: w\nname: W\nversion: 2\ncurrency: CNY\nstates:\n"
        "  - {name: early, condition: {days_past_due_at_least: 1, days_past_due_at_most: 30}}\n"
        "  - {name: late, condition: {days_past_due_at_least: 31}}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["validate", str(f)])
    assert result.exit_code == 0
    assert "warning: states[1]" in result.stderr
    assert "ok: W v2, 2 states, 0 actions" in result.stdout


def test_a_missing_file_is_a_clear_error() -> None:
    result = runner.invoke(app, ["validate", "/nonexistent/strategy.yaml"])
    assert result.exit_code == 2
    assert "cannot read the file" in result.stderr


def test_a_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(InvalidInput, match=r"x.yaml: line \d+, column \d+"):
        load_strategy_text("id: x\nname: [unclosed\n", "x.yaml")


def test_a_key_written_twice_is_an_error_not_silently_the_last_one() -> None:
    with pytest.raises(InvalidInput, match="written twice"):
        load_strategy_text("id: x\nid: y\n", "x.yaml")


def test_the_loader_names_the_file_in_every_error() -> None:
    with pytest.raises(InvalidInputs) as caught:
        load_strategy_text("id: x\nname: X\nversion: 1\ncurrency: CNY\nstates: []\n", "x.yaml")
    assert all(e.record == "x.yaml" for e in caught.value.errors)


def test_an_edited_strategy_file_is_read_again_not_served_from_the_parse_cache(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = bundled_strategy_path("default").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_strategy(path)
    assert load_strategy(path) is first  # unchanged text: parsed once
    path.write_text(text.replace("name: m1_early", "name: m1_first_week"), encoding="utf-8")
    names = [s.name for s in load_strategy(path).states]
    assert "m1_first_week" in names and "m1_early" not in names
    path.write_text(text.replace("days_past_due_at_least: 1\n", "days_past_due_at_least: x\n"),
                    encoding="utf-8")
    for _ in range(2):  # an error is raised every time, never cached as a result
        with pytest.raises((InvalidInput, InvalidInputs)):
            load_strategy(path)
