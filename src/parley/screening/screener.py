"""Screen a written message against the lexicon with one Aho-Corasick automaton.

``Screener(lexicon).screen(text)`` returns a :class:`parley.core.content.ContentScreening`:
the lexicon version and every hit (category, the term as written in the lexicon, the words as
they appear in the message). Matching runs on the normalised stream (see
:mod:`parley.screening.normalize`):

- CJK terms match anywhere: Chinese has no word boundaries, and 曝.光 must still hit.
- Latin terms must start and end on a word boundary of the original text, so "skill" does not
  hit "kill" but "k.i.l.l you" and "K I L L" do. Zero-width characters never make a boundary
  ("s\\u200bkill" is still "skill"), and a match may not begin or end in the middle of a
  letter-spaced run ("s k i l l" is not "kill").
- A hit lying wholly inside an ``allow`` phrase of its category is dropped (谨防诈骗 is a fraud
  warning, not an accusation); a hit inside a longer hit of the same category is dropped too,
  so a denial lists each offending phrase once.

The common case — nothing suspicious — costs one ``str.translate``, one OpenCC call and one
automaton pass; offsets back to the original text are computed only when something matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import Any

import ahocorasick

from parley.core.content import ContentHit, ContentScreening
from parley.screening.lexicon import Category, Lexicon, Term, load_lexicon
from parley.screening.normalize import I_OR_L, char_class, normalize, stream

_MAX_VARIANTS = 256


@dataclass(frozen=True, slots=True)
class _Pattern:
    """What one automaton key stands for.

    category: the category name.
    term: the lexicon entry (its ``text`` is reported).
    allow: True for an allowed phrase, False for a term.
    length: length of the key in the stream.
    """

    category: str
    term: Term
    allow: bool
    length: int


def _variants(key: str, latin: bool) -> list[str]:
    """The keys to insert for a term: a leet ``1`` in the text stands for i or l, so a Latin
    term's i/l letters may each also appear as :data:`I_OR_L`."""
    if not latin:
        return [key]
    slots = [i for i, c in enumerate(key) if c in "il"]
    if 2 ** len(slots) > _MAX_VARIANTS:
        slots = slots[:8]
    out = []
    for choice in product((False, True), repeat=len(slots)):
        chars = list(key)
        for pos, swap in zip(slots, choice, strict=True):
            if swap:
                chars[pos] = I_OR_L
        out.append("".join(chars))
    return out


def _boundary(text: str, index: int, step: int) -> bool:
    """Is there a Latin word boundary just outside original position ``index`` (the first
    matched character when ``step`` is -1, the last when it is +1)?"""

    def skip(i: int, direction: int) -> int:
        while 0 <= i < len(text) and char_class(text[i]) == "ignorable":
            i += direction
        return i

    outside = skip(index + step, step)
    if not 0 <= outside < len(text):
        return True
    kind = char_class(text[outside])
    if kind == "word":
        return False
    if kind != "separator":
        return True
    # Letter-spaced text ("s k i l l"): a boundary only if the matched edge character or the
    # neighbour beyond the separators is not a lone word character.
    inside = skip(index - step, -step)
    edge_alone = not (0 <= inside < len(text)) or char_class(text[inside]) != "word"
    if not edge_alone:
        return True
    j = outside
    while 0 <= j < len(text) and char_class(text[j]) in ("separator", "ignorable"):
        j += step
    if not 0 <= j < len(text) or char_class(text[j]) != "word":
        return True
    beyond = skip(j + step, step)
    neighbour_alone = not (0 <= beyond < len(text)) or char_class(text[beyond]) != "word"
    return not neighbour_alone


def _build(categories: Iterable[Category]) -> Any:
    """One Aho-Corasick automaton over every term and allowed phrase of ``categories``."""
    automaton = ahocorasick.Automaton()
    entries: dict[str, list[_Pattern]] = {}
    for category in categories:
        for items, allow in ((category.terms, False), (category.allow, True)):
            for term in items:
                for key in _variants(term.key, term.latin):
                    bucket = entries.setdefault(key, [])
                    # One report per (category, kind): the first written form wins.
                    if not any(p.category == category.name and p.allow == allow for p in bucket):
                        bucket.append(_Pattern(category.name, term, allow, len(key)))
    if not entries:
        return None  # pyahocorasick cannot search an empty automaton
    for key, patterns in entries.items():
        automaton.add_word(key, tuple(patterns))
    automaton.make_automaton()
    return automaton


class Screener:
    """Screens texts against one lexicon; build once and reuse (the automaton is built in the
    constructor). Thread-safe: screening only reads the automaton."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.version = lexicon.version
        # Two automata so the fast path never sees a category it would then ignore: the
        # borrower one lacks third-party-only categories (debt words are everywhere in
        # ordinary reminders to the borrower).
        self._to_borrower = _build(c for c in lexicon.categories if c.applies_to == "all")
        self._to_third_party = _build(lexicon.categories)

    def screen(self, text: str, *, third_party: bool = False) -> ContentScreening:
        """Screen ``text``. Categories that apply only to third parties (``debt_disclosure``)
        are applied only when ``third_party`` is True."""
        automaton = self._to_third_party if third_party else self._to_borrower
        if automaton is None or next(automaton.iter(stream(text)), None) is None:
            return ContentScreening(self.version)
        return ContentScreening(self.version, self._exact(text, automaton))

    def _exact(self, text: str, automaton: Any) -> tuple[ContentHit, ...]:
        norm = normalize(text)
        hits: list[tuple[int, int, _Pattern]] = []
        allowed: dict[str, list[tuple[int, int]]] = {}
        for end, patterns in automaton.iter(norm.text):
            for p in patterns:
                start = end - p.length + 1
                if p.term.latin and not (
                    _boundary(text, norm.offsets[start], -1)
                    and _boundary(text, norm.offsets[end], +1)
                ):
                    continue
                if p.allow:
                    allowed.setdefault(p.category, []).append((start, end))
                else:
                    hits.append((start, end, p))

        def covered(start: int, end: int, spans: list[tuple[int, int]], strict: bool) -> bool:
            return any(
                s <= start and end <= e and (not strict or (s, e) != (start, end)) for s, e in spans
            )

        spans_by_cat: dict[str, list[tuple[int, int]]] = {}
        for s, e, p in hits:
            spans_by_cat.setdefault(p.category, []).append((s, e))
        out: list[tuple[int, ContentHit]] = []
        seen: set[tuple[str, str, str]] = set()
        for s, e, p in hits:
            if covered(s, e, allowed.get(p.category, []), strict=False):
                continue
            if covered(s, e, spans_by_cat[p.category], strict=True):
                continue
            hit = ContentHit(p.category, p.term.text, norm.span(text, s, e))
            key = (hit.category, hit.term, hit.matched)
            if key not in seen:
                seen.add(key)
                out.append((s, hit))
        out.sort(key=lambda item: item[0])  # in reading order, so a denial quotes in order
        return tuple(h for _, h in out)


@cache
def default_screener() -> Screener:
    """The screener for the packaged lexicon, built on first use and shared."""
    return Screener(load_lexicon())
