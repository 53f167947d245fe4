"""The result of screening a written message, as a value the gate can reason about.

The screener itself (normalisation, lexicon, Aho-Corasick) lives in `parley.screening`
because it needs third-party libraries; the gate only sees its verdict, passed in as a fact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContentHit:
    """One lexicon entry found in a message.

    category: the lexicon category, e.g. ``threat``, ``obscenity``, ``exposure``,
        ``impersonation``, ``false_legal``, ``third_party_pressure``.
    term: the lexicon entry as written in the lexicon.
    matched: the text as it appeared in the message (before normalisation).
    """

    category: str
    term: str
    matched: str


@dataclass(frozen=True, slots=True)
class ContentScreening:
    """The verdict on one text: which lexicon version judged it and what it found.

    An empty ``hits`` means the text is clean under that lexicon version.
    """

    lexicon_version: str
    hits: tuple[ContentHit, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.hits

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({h.category for h in self.hits}))
