"""Normalisation shared by lexicon terms and screened text.

Both sides go through the same pipeline, so a term matches whatever disguise the text wears:

1. per character (computed once per distinct character and cached): NFKD, drop combining
   marks, NFKC (full-width ``ＫＩＬＬ`` → ``KILL``, ``ｋïｌｌ`` → ``kill``), casefold, a few
   Cyrillic/Greek look-alikes → Latin, Traditional → Simplified (OpenCC ``t2s``, one converter
   reused) and a few variants OpenCC leaves apart (帐/账, 著/着, 您/妳 → 你);
2. classify every character: *ignorable* (zero-width, format, marks, private use, Hangul
   fillers — removed and never split a word), *separator* (spaces, punctuation, symbols,
   controls, emoji — removed, but they do split words), or *kept* (letters and digits, plus
   ``@`` and ``$`` which may be leetspeak);
3. leetspeak (0→o, 1→i/l, 3→e, 4→a, 5→s, @→a, $→s) only inside Latin runs: in a
   separator-delimited token that holds an ASCII letter, or a single-character token next
   to a letter (letter-spaced ``k 1 l l``). Elsewhere digits stay digits ("逾期3天",
   "$120.00") and a lone ``@``/``$`` is dropped. ``1`` becomes :data:`I_OR_L`, which the
   screener expands on the term side to both ``i`` and ``l``;
4. strip separators.

Traditional → Simplified is done character by character, not phrase by phrase: matching only
needs terms and text to land on the same form, and per-character conversion keeps offsets
trivial, handles mixed-script text and costs nothing per message once the table is warm.

:func:`stream` returns just the normalised string (``str.translate`` and a regex);
:func:`normalize` also returns, for every character of the stream, the offset of the original
character it came from, so a hit can quote the text as the sender wrote it. Both run the same
steps on the same per-character table, and a property test checks they agree.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

#: Stands for "i or l" in the stream (a leet ``1``). Upper-case ASCII never survives
#: casefolding, so it cannot be confused with text, and OpenCC passes it through.
I_OR_L = "L"

SEPARATOR = " "
_IGNORABLE_CATEGORIES = frozenset({"Cf", "Co", "Cn", "Cs", "Mn", "Mc", "Me"})
# Invisible characters that Unicode classifies as letters or symbols.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
_LEET_SYMBOLS = "@$"
_LEET = {"0": "o", "1": I_OR_L, "3": "e", "4": "a", "5": "s", "@": "a", "$": "s"}
_LEET_CHAR = re.compile(r"[013-5@$]")
_ASCII_LETTER = re.compile(r"[a-z]")
# Cyrillic and Greek letters that look like Latin ones (after casefolding).
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ӏ": "l", "α": "a", "ο": "o", "ρ": "p", "ι": "i", "κ": "k", "ν": "v", "τ": "t", "υ": "u",
}  # fmt: skip
# Simplified variants OpenCC's t2s leaves distinct; folded so one term covers both.
_FOLD = str.maketrans({"帐": "账", "著": "着", "您": "你", "妳": "你"})


def _normalize_char(ch: str) -> str:
    """The stream text for one original character: '' (ignorable), ' ' (separator) or the
    characters it stands for (usually one; ``ß`` gives ``ss``)."""
    if ch in _INVISIBLE:
        return ""
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if unicodedata.category(c) not in _IGNORABLE_CATEGORIES)
    if not base:
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", base).casefold():
        c = _CONFUSABLES.get(c, c)
        cat = unicodedata.category(c)
        if cat in _IGNORABLE_CATEGORIES or c in _INVISIBLE:
            continue
        if cat[0] in "LN" or c in _LEET_SYMBOLS:
            out.append(c)
        else:
            out.append(SEPARATOR)
    text = "".join(out)
    # A character that is wholly punctuation becomes exactly one separator.
    if not text.strip():
        return SEPARATOR if text else ""
    text = text.replace(SEPARATOR, "")
    if not text.isascii():
        text = _t2s().convert(text).translate(_FOLD) or text
    return text


class _CharTable(dict[int, "str | int"]):
    """ord → stream text, filled on first sight; usable directly by ``str.translate``.
    A character that stands for itself is stored as its own ``int`` (translate is faster)."""

    def __missing__(self, key: int) -> str | int:
        text = _normalize_char(chr(key))
        value: str | int = key if text == chr(key) else text
        self[key] = value
        return value


_TABLE = _CharTable()


class _IrregularTable(dict[int, str]):
    """ord → '' when the character becomes exactly one stream character, else a marker:
    ``text.translate(_IRREGULAR)`` is empty exactly when offsets are the identity."""

    def __missing__(self, key: int) -> str:
        value = "" if len(char_text(chr(key))) == 1 else "!"
        self[key] = value
        return value


_IRREGULAR = _IrregularTable()


def char_text(ch: str) -> str:
    """What one original character becomes in the stream (before leetspeak)."""
    value = _TABLE[ord(ch)]
    return chr(value) if isinstance(value, int) else value


def char_class(ch: str) -> str:
    """``ignorable``, ``separator``, ``word`` (Latin letter, digit, ``@``/``$``) or ``other``
    (CJK and other scripts) — the classes used for Latin word boundaries."""
    out = char_text(ch)
    if not out:
        return "ignorable"
    if out == SEPARATOR:
        return "separator"
    first = out[0]
    if first.isascii() and (first.isalnum() or first in _LEET_SYMBOLS):
        return "word"
    return "other"


def _neighbour(spaced: str, index: int, step: int) -> str:
    index += step
    while 0 <= index < len(spaced) and spaced[index] == SEPARATOR:
        index += step
    return spaced[index] if 0 <= index < len(spaced) else ""


def _drop_symbols(s: str) -> str:
    # str.replace, not translate: translate with a sparse table is slow on misses.
    return s.replace("@", SEPARATOR).replace("$", SEPARATOR)


def _apply_leet(spaced: str) -> str:
    """Map leetspeak inside Latin runs; drop ``@``/``$`` elsewhere. Length-preserving (a
    dropped character becomes a separator), so offsets computed on ``spaced`` stay valid."""
    if not _LEET_CHAR.search(spaced):
        return spaced
    if not _ASCII_LETTER.search(spaced):  # no Latin run at all (most Chinese messages)
        return _drop_symbols(spaced)
    parts: list[str] = []
    done = 0  # everything before this index is already in parts
    for m in _LEET_CHAR.finditer(spaced):
        if m.start() < done:
            continue  # inside a token already handled
        start = spaced.rfind(SEPARATOR, 0, m.start()) + 1
        end = spaced.find(SEPARATOR, m.end())
        end = len(spaced) if end < 0 else end
        tok = spaced[start:end]
        if _ASCII_LETTER.search(tok) or (
            len(tok) == 1
            and (
                _ASCII_LETTER.match(_neighbour(spaced, start, -1))
                or _ASCII_LETTER.match(_neighbour(spaced, start, +1))
            )
        ):
            for leet, letter in _LEET.items():
                tok = tok.replace(leet, letter)
        else:
            tok = _drop_symbols(tok)
        parts.append(spaced[done:start])
        parts.append(tok)
        done = end
    parts.append(spaced[done:])
    return "".join(parts)


@cache
def _t2s() -> Any:
    import opencc  # imported lazily: nothing is built at import time

    return opencc.OpenCC("t2s")


def stream(text: str) -> str:
    """The normalised form of ``text`` (no offsets). Used for lexicon terms and as the fast
    first pass of screening."""
    return _apply_leet(text.translate(_TABLE)).replace(SEPARATOR, "")


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalised text and where each of its characters came from.

    text: the normalised stream (may be empty: a text of separators only).
    offsets: for each character of ``text``, the index in the original string of the
        character it came from; several stream characters may share one offset (``ß``).
    """

    text: str
    offsets: tuple[int, ...]

    def span(self, original: str, start: int, end: int) -> str:
        """The original text behind stream characters ``start``..``end`` (inclusive)."""
        last = self.offsets[end]
        stop = last + 1
        # Include trailing marks/ignorables that belong to the last character (e.g. "ï").
        while (
            stop < len(original)
            and not char_text(original[stop])
            and unicodedata.category(original[stop]).startswith("M")
        ):
            stop += 1
        return original[self.offsets[start] : stop]


def normalize(text: str) -> Normalized:
    """The normalised stream of ``text`` with offsets back into ``text``."""
    spaced = text.translate(_TABLE)
    if text.translate(_IRREGULAR):
        # Some character vanished (zero-width) or became several (ß): map one by one.
        chars: list[str] = []
        offsets: list[int] = []
        for i, ch in enumerate(text):
            for c in char_text(ch):
                chars.append(c)
                offsets.append(i)
        spaced = "".join(chars)
    else:
        offsets = list(range(len(text)))  # one stream character per original character
    spaced = _apply_leet(spaced)
    kept = [i for i, c in enumerate(spaced) if c != SEPARATOR]
    return Normalized(spaced.replace(SEPARATOR, ""), tuple(offsets[i] for i in kept))
