"""The packaged lexicon loads, is curated to size, and a malformed lexicon is refused clearly."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from parley.screening import CATEGORIES, LexiconError, Screener, load_lexicon
from parley.screening.lexicon import LANGUAGES


def _minimal() -> dict[str, Any]:
    return {
        "version": "test-1",
        "categories": {
            "threat": {
                "description": "threats",
                "terms": {"en": ["kill you"], "zh-Hans": ["弄死你"]},
            },
            "debt_disclosure": {
                "description": "debt words",
                "applies_to": "third_party",
                "terms": {"en": ["debt"]},
            },
        },
    }


def test_the_packaged_lexicon_loads_with_its_version() -> None:
    lexicon = load_lexicon()
    assert lexicon.version == "2026.11-1"
    assert tuple(c.name for c in lexicon.categories) == CATEGORIES


def test_every_category_has_terms_in_every_language() -> None:
    counts = load_lexicon().term_counts()
    for name in CATEGORIES:
        for language in LANGUAGES:
            assert counts[name][language] >= 5, (name, language)


def test_the_lexicon_is_curated_not_a_dump() -> None:
    counts = load_lexicon().term_counts()
    for language in LANGUAGES:
        total = sum(counts[c][language] for c in CATEGORIES)
        assert 40 <= total <= 90, (language, total)


def test_only_debt_disclosure_is_limited_to_third_parties() -> None:
    lexicon = load_lexicon()
    assert {c.name for c in lexicon.categories if c.applies_to == "third_party"} == {
        "debt_disclosure"
    }


def test_a_file_path_loads_the_same_way(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "lex.yaml"
    path.write_text(yaml.safe_dump(_minimal(), allow_unicode=True), encoding="utf-8")
    lexicon = load_lexicon(path)
    assert lexicon.version == "test-1"
    assert Screener(lexicon).screen("I will kill you").categories == ("threat",)


def _error(data: Any) -> LexiconError:
    with pytest.raises(LexiconError) as info:
        load_lexicon(data)
    return info.value


def test_an_unknown_category_is_refused_by_name() -> None:
    data = _minimal()
    data["categories"]["politics"] = {"description": "x", "terms": {"en": ["vote"]}}
    err = _error(data)
    assert err.field == "categories.politics"
    assert "unknown category 'politics'" in err.message


def test_an_empty_term_is_refused_with_its_position() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["en"].append("  ")
    err = _error(data)
    assert err.field == "categories.threat.terms.en[1]"
    assert "empty term" in err.message


def test_a_term_of_punctuation_only_is_refused() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["en"].append("...")
    assert "no letters" in _error(data).message


def test_a_duplicate_term_is_refused_even_when_written_differently() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["en"].append("KILL  you")
    err = _error(data)
    assert err.field == "categories.threat.terms.en[1]"
    assert "duplicate term" in err.message
    assert "categories.threat.terms.en[0]" in err.message


def test_the_same_term_in_two_categories_is_refused() -> None:
    data = _minimal()
    data["categories"]["debt_disclosure"]["terms"]["en"].append("kill you")
    err = _error(data)
    assert err.field == "categories.debt_disclosure.terms.en[1]"
    assert "already in categories.threat" in err.message


def test_the_same_word_in_zh_hans_and_zh_hant_is_expected() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["zh-Hant"] = ["弄死你"]
    assert load_lexicon(data).category("threat").terms[-1].language == "zh-Hant"


def test_traditional_and_simplified_twins_in_one_language_are_duplicates() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["zh-Hans"].append("弄死妳")
    assert "duplicate term" in _error(data).message


def test_an_unknown_language_is_refused() -> None:
    data = _minimal()
    data["categories"]["threat"]["terms"]["fr"] = ["tuer"]
    assert _error(data).field == "categories.threat.terms.fr"


def test_an_allowed_phrase_must_contain_a_term_of_its_category() -> None:
    data = _minimal()
    data["categories"]["threat"]["allow"] = {"en": ["have a nice day"]}
    err = _error(data)
    assert err.field == "categories.threat.allow.en[0]"
    assert "contains no term" in err.message


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(version=""), "version"),
        (lambda d: d.update(categories={}), "categories"),
        (lambda d: d["categories"]["threat"].pop("description"), "categories.threat.description"),
        (
            lambda d: d["categories"]["threat"].update(applies_to="x"),
            "categories.threat.applies_to",
        ),
        (lambda d: d["categories"]["threat"].update(terms={}), "categories.threat.terms"),
        (lambda d: d["categories"]["threat"].update(colour=1), "categories.threat.colour"),
        (
            lambda d: d["categories"]["threat"]["terms"].update(en="kill"),
            "categories.threat.terms.en",
        ),
        (
            lambda d: d["categories"]["threat"]["terms"]["en"].append("k1ll"),
            "categories.threat.terms.en[1]",
        ),
    ],
)
def test_malformed_lexicons_name_the_field(mutate: Any, field: str) -> None:
    data = copy.deepcopy(_minimal())
    mutate(data)
    assert _error(data).field == field


def test_a_file_that_is_not_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: [unclosed", encoding="utf-8")
    err = _error(path)
    assert err.record == str(path)
    assert "not valid YAML" in err.message


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "missing.yaml").record.endswith("missing.yaml")
