"""What Parley accepts as an identifier and as text, from any face: one definition for the API's
models, the web forms, the importers and the services behind them."""

from __future__ import annotations

import re

# A record id from outside (loan, borrower, payment, complaint, staff): short, URL-safe, and
# printable in a log or an error message.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
ID = re.compile(ID_PATTERN)

# What no text may hold: control characters other than tab and line breaks (a NUL cannot be
# stored in PostgreSQL text; the rest are never typed, only pasted, forged or left by a
# mis-encoded file), and lone surrogates (a JSON "\ud800" escape), which are not characters and
# cannot be written as UTF-8.
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def first_not_text(value: str) -> re.Match[str] | None:
    """The first character no text may hold, or None (printable text is checked cheaply)."""
    return None if value.isprintable() else NOT_TEXT.search(value)


def not_text_message(found: re.Match[str]) -> str:
    """What every face says about a character no text may hold (``first_not_text``'s match):
    which one and where, so the sender can find it."""
    return (f"must not contain control characters (found U+{ord(found.group()):04X} at "
            f"position {found.start() + 1}; tab and line breaks are allowed)")
