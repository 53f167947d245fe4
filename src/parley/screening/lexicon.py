"""The screening lexicon: a versioned YAML file of categories, terms and allowed phrases.

Reading is a pipeline — parse YAML → check shape → check every term → check across terms —
and any problem raises :class:`LexiconError` naming the file and the field (for example
``categories.threat.terms.en[3]``), so a reviewer can fix the file without reading code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from parley.errors import InvalidInput
from parley.screening.normalize import stream

#: Every category the screener knows. A lexicon may leave one out, but not invent one:
#: the gate's rule packs refer to these names.
CATEGORIES: tuple[str, ...] = (
    "threat",
    "obscenity",
    "exposure",
    "impersonation",
    "false_legal",
    "third_party_pressure",
    "debt_disclosure",
)
LANGUAGES: tuple[str, ...] = ("zh-Hans", "zh-Hant", "en")
#: ``all``: screened in every message; ``third_party``: only when the recipient is a third
#: party (``debt_disclosure``: words that are fine to the borrower but disclose the debt).
APPLIES_TO: tuple[str, ...] = ("all", "third_party")
PACKAGED = "v1.yaml"


class LexiconError(InvalidInput):
    """The lexicon file is malformed; ``record`` names the file, ``field`` the entry."""


@dataclass(frozen=True, slots=True)
class Term:
    """One lexicon entry.

    text: as written in the lexicon (reported back in hits).
    language: ``zh-Hans``, ``zh-Hant`` or ``en``.
    key: the normalised form the screener matches; never empty.
    latin: True when ``key`` is all ASCII, so the match must sit on word boundaries of the
        original text; False for CJK terms, which match anywhere (Chinese has no spaces).
    """

    text: str
    language: str
    key: str
    latin: bool


@dataclass(frozen=True, slots=True)
class Category:
    """A category of abusive content.

    name: one of :data:`CATEGORIES`.
    description: what the category covers, for reviewers and denial messages.
    applies_to: ``all`` or ``third_party`` (see :data:`APPLIES_TO`).
    terms: the entries that make a message hit this category; never empty.
    allow: benign phrases containing a term; a hit lying wholly inside an allowed phrase of
        the same category is not reported. Empty when none are needed.
    """

    name: str
    description: str
    applies_to: str
    terms: tuple[Term, ...]
    allow: tuple[Term, ...] = ()


@dataclass(frozen=True, slots=True)
class Lexicon:
    """A whole lexicon file.

    version: carried into every screening result, e.g. ``2026.11-1``.
    categories: in file order.
    source: where it was read from (for error messages); empty for an in-memory mapping.
    """

    version: str
    categories: tuple[Category, ...]
    source: str = ""

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    def term_counts(self) -> dict[str, dict[str, int]]:
        """{category: {language: number of terms}} — for reports and reviews."""
        return {
            c.name: {lang: sum(1 for t in c.terms if t.language == lang) for lang in LANGUAGES}
            for c in self.categories
        }


def load_lexicon(source: str | Path | Mapping[str, Any] | None = None) -> Lexicon:
    """Read and validate a lexicon: the packaged one when ``source`` is None, else a YAML
    file path or an already-parsed mapping."""
    if source is None:
        ref = resources.files("parley").joinpath("lexicon", PACKAGED)
        return parse_lexicon(_yaml(ref.read_text(encoding="utf-8"), PACKAGED), PACKAGED)
    if isinstance(source, Mapping):
        return parse_lexicon(source, "")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise LexiconError(f"cannot read lexicon: {e}", record=str(path)) from e
    return parse_lexicon(_yaml(text, str(path)), str(path))


def _yaml(text: str, record: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LexiconError(f"not valid YAML: {e}", record=record) from e


def parse_lexicon(data: Any, record: str = "") -> Lexicon:
    """Validate a parsed lexicon mapping and build the :class:`Lexicon`."""
    rec = record or "lexicon"

    def fail(field: str, message: str) -> LexiconError:
        return LexiconError(message, record=rec, field=field)

    if not isinstance(data, Mapping):
        raise fail("", "a lexicon must be a mapping with 'version' and 'categories'")
    unknown_top = set(data) - {"version", "description", "categories"}
    if unknown_top:
        raise fail(sorted(unknown_top)[0], "unknown top-level key")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise fail("version", 'must be a non-empty string, e.g. "2026.11-1"')
    cats = data.get("categories")
    if not isinstance(cats, Mapping) or not cats:
        raise fail("categories", "must be a non-empty mapping of category name to entry")

    categories: list[Category] = []
    owner: dict[str, tuple[str, str]] = {}  # normalised key -> (category, field) first seen
    seen: dict[tuple[str, str, str], str] = {}  # (key, category, language) -> field
    for name, body in cats.items():
        where = f"categories.{name}"
        if name not in CATEGORIES:
            raise fail(where, f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
        if not isinstance(body, Mapping):
            raise fail(where, "must be a mapping with description, terms and optional allow")
        extra = set(body) - {"description", "applies_to", "terms", "allow"}
        if extra:
            raise fail(f"{where}.{sorted(extra)[0]}", "unknown key")
        description = body.get("description")
        if not isinstance(description, str) or not description.strip():
            raise fail(f"{where}.description", "must be a non-empty string")
        applies_to = body.get("applies_to", "all")
        if applies_to not in APPLIES_TO:
            raise fail(f"{where}.applies_to", f"must be one of {', '.join(APPLIES_TO)}")
        terms = _entries(body.get("terms"), f"{where}.terms", fail, required=True)
        allow = _entries(body.get("allow"), f"{where}.allow", fail, required=False)

        for field, term in terms:
            first = owner.setdefault(term.key, (name, field))
            if first[0] != name:
                raise fail(field, f"duplicate term {term.text!r}: already in {first[1]}")
            # The same word written identically in zh-Hans and zh-Hant is expected; twice
            # in one language is a mistake.
            same_lang = seen.setdefault((term.key, name, term.language), field)
            if same_lang != field:
                raise fail(field, f"duplicate term {term.text!r}: same as {same_lang}")
        seen_allow: set[str] = set()
        for field, phrase in allow:
            if phrase.key in seen_allow:
                raise fail(field, f"duplicate allowed phrase {phrase.text!r}")
            seen_allow.add(phrase.key)
            if not any(t.key in phrase.key for _, t in terms):
                raise fail(field, f"allowed phrase {phrase.text!r} contains no term of {name}")
        categories.append(
            Category(
                name=name,
                description=description.strip(),
                applies_to=applies_to,
                terms=tuple(t for _, t in terms),
                allow=tuple(p for _, p in allow),
            )
        )
    return Lexicon(version=version.strip(), categories=tuple(categories), source=record)


def _entries(block: Any, where: str, fail: Any, *, required: bool) -> list[tuple[str, Term]]:
    if block is None and not required:
        return []
    if not isinstance(block, Mapping) or (required and not block):
        raise fail(where, "must be a mapping of language (zh-Hans, zh-Hant, en) to a list")
    out: list[tuple[str, Term]] = []
    for lang, items in block.items():
        if lang not in LANGUAGES:
            raise fail(f"{where}.{lang}", f"unknown language; known: {', '.join(LANGUAGES)}")
        if items is None:
            continue
        if not isinstance(items, list):
            raise fail(f"{where}.{lang}", "must be a list of strings")
        for i, raw in enumerate(items):
            field = f"{where}.{lang}[{i}]"
            if not isinstance(raw, str) or not raw.strip():
                raise fail(field, "empty term")
            key = stream(raw)
            if not key:
                raise fail(field, f"term {raw!r} has no letters once normalised")
            latin = key.isascii()
            if latin and any(c.isdigit() or c in "@$" for c in unicodedata.normalize("NFKC", raw)):
                raise fail(
                    field, f"Latin term {raw!r}: write it plainly, without digits or leetspeak"
                )
            out.append((field, Term(text=raw.strip(), language=lang, key=key, latin=latin)))
    if required and not out:
        raise fail(where, "no terms")
    return out
