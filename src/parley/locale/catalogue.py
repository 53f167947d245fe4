"""Maintain the page catalogues: `python -m parley.locale.catalogue extract` refreshes the
.po files from the templates and code (keeping existing translations), `compile` writes the
.mo files the server loads, `check` fails if a message lacks a translation or a .mo is stale.

The .po files are the source of truth (reviewed by people: collection wording is regulated);
the .mo files are committed too, so a fresh clone serves every language without a build step.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).parent
SRC = HERE.parent  # the parley package
LOCALES = ("zh_Hans", "zh_Hant", "en")
TRANSLATED = ("zh_Hans", "zh_Hant")  # en uses the message ids themselves
METHOD_MAP = [
    ("faces/web/templates/**.html", "jinja2"),
    ("faces/web/**.py", "python"),
]
OPTIONS = {"faces/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def po_path(locale: str) -> Path:
    return HERE / locale / "LC_MESSAGES" / "messages.po"


def extract() -> Catalog:
    template = Catalog(project="Parley", version="1", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(SRC), METHOD_MAP, OPTIONS, keywords=KEYWORDS, strip_comment_tags=True
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def _read(locale: str) -> Catalog:
    path = po_path(locale)
    if not path.exists():
        return Catalog(locale=locale, project="Parley", version="1", charset="utf-8")
    with path.open("rb") as fh:
        return read_po(fh, locale=locale)


def _write_po(locale: str, catalog: Catalog) -> None:
    path = po_path(locale)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    write_po(buf, catalog, width=100, omit_header=False, sort_output=True, include_lineno=False)
    path.write_bytes(buf.getvalue())


def update() -> None:
    template = extract()
    for locale in LOCALES:
        catalog = _read(locale)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        _write_po(locale, catalog)


def mo_bytes(locale: str) -> bytes:
    buf = io.BytesIO()
    write_mo(buf, _read(locale), use_fuzzy=False)
    return buf.getvalue()


def compile_all() -> None:
    for locale in LOCALES:
        (po_path(locale).with_suffix(".mo")).write_bytes(mo_bytes(locale))


def problems() -> list[str]:
    """Messages in the code without a translation, and .mo files that do not match their .po."""
    out: list[str] = []
    ids = {m.id for m in extract() if m.id}
    for locale in LOCALES:
        catalog = _read(locale)
        have = {m.id: m for m in catalog if m.id}
        for mid in sorted(ids, key=str):
            m = have.get(mid)
            if m is None:
                out.append(f"{locale}: missing {mid!r}")
            elif locale in TRANSLATED and (not m.string or (isinstance(m.string, tuple) and not all(m.string)) or m.fuzzy):
                out.append(f"{locale}: untranslated {mid!r}")
        mo = po_path(locale).with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != mo_bytes(locale):
            out.append(f"{locale}: {mo.name} is stale; run `python -m parley.locale.catalogue compile`")
    return out


if __name__ == "__main__":
    cmd = sys.argv[1:] or ["check"]
    if cmd == ["extract"]:
        update()
    elif cmd == ["compile"]:
        compile_all()
    elif cmd == ["check"]:
        found = problems()
        sys.stdout.write("\n".join(found) + ("\n" if found else "catalogues complete\n"))
        sys.exit(1 if found else 0)
    else:
        sys.exit("usage: python -m parley.locale.catalogue [extract|compile|check]")
