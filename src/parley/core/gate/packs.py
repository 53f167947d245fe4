"""Build a RulePack from an already-parsed document (pure: no file access, no YAML).

A pack document::

    id: US-MA                     # required
    version: "2026.1"             # required
    name: Massachusetts           # required
    extends: US                   # optional: the parent pack's id
    default_timezone: America/New_York
    rules:                        # evaluated in this order (parent's rules first)
      - id: us-ma.calls-texts-7-days
        kind: contacts_per_person_per_debt_in_days_at_most
        params: {contacts_at_most: 2, days: 7, channels: [call, sms]}
        citation: {source: "940 CMR 7.04(1)(f)", section: "..."}
        provisional: false
        messages: {en: "...", zh-Hans: "...", zh-Hant: "..."}   # may use {param} names

Composition: a child rule with a parent's id overrides the fields it gives (``params`` are
merged key by key); ``disabled: true`` removes the parent's rule; a new id is appended.
Every problem raises ``PackError`` naming the pack, the rule and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from parley.core.gate.model import LANGS, Citation, Finding, Rule, RulePack
from parley.core.gate.rules import KINDS, zone

EFFECT_PREFIX: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "deny": {"en": "Blocked: ", "zh-Hans": "禁止：", "zh-Hant": "禁止："},
    "allow": {"en": "Satisfied: ", "zh-Hans": "符合：", "zh-Hant": "符合："},
    "advise": {"en": "Advisory: ", "zh-Hans": "提示：", "zh-Hant": "提示："},
})

_RULE_KEYS = frozenset({"id", "kind", "params", "citation", "provisional", "messages",
                        "disabled"})
_PACK_KEYS = frozenset({"id", "version", "name", "extends", "default_timezone", "rules",
                        "horizon_days", "notes", "sources"})


class PackError(ValueError):
    """A pack document is invalid. ``field`` is the dotted path of the offending value."""

    def __init__(self, message: str, *, pack: str = "", field: str = "") -> None:
        self.message = message
        self.pack = pack
        self.field = field
        where = " ".join(x for x in (f"pack {pack!r}" if pack else "",
                                     f"at {field}" if field else "") if x)
        super().__init__(f"{where}: {message}" if where else message)


def _fmt_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _rule_as_doc(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "kind": rule.kind,
        "params": dict(rule.raw_params),
        "citation": {"source": rule.citation.source, "section": rule.citation.section},
        "provisional": rule.provisional,
        "messages": dict(rule.templates),
    }


def build_rule(doc: Mapping[str, Any], *, pack: str, where: str) -> Rule:
    """One rule from its document; ``where`` is its path for error messages."""
    if not isinstance(doc, Mapping):
        raise PackError("a rule must be a mapping", pack=pack, field=where)
    unknown = set(doc) - _RULE_KEYS
    if unknown:
        raise PackError(f"unknown keys {sorted(unknown)}", pack=pack, field=where)
    rid = doc.get("id")
    if not isinstance(rid, str) or not rid:
        raise PackError("rule id must be a non-empty string", pack=pack, field=f"{where}.id")
    kind_name = doc.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise PackError(f"unknown rule kind {kind_name!r}; known: {sorted(KINDS)}",
                        pack=pack, field=f"{where}.kind")
    raw = doc.get("params") or {}
    if not isinstance(raw, Mapping):
        raise PackError("params must be a mapping", pack=pack, field=f"{where}.params")
    extra = set(raw) - set(kind.params)
    if extra:
        raise PackError(f"unknown params {sorted(extra)} for kind {kind.name}; "
                        f"known: {sorted(kind.params)}", pack=pack, field=f"{where}.params")
    params: dict[str, Any] = {}
    for name, spec in kind.params.items():
        if name in raw:
            try:
                params[name] = spec.convert(raw[name])
            except (ValueError, TypeError) as exc:
                raise PackError(str(exc), pack=pack, field=f"{where}.params.{name}") from exc
        elif spec.required:
            raise PackError(f"missing required param {name!r}", pack=pack,
                            field=f"{where}.params.{name}")
        else:
            params[name] = spec.default
    if kind.validate is not None:
        try:
            kind.validate(params)
        except ValueError as exc:
            raise PackError(str(exc), pack=pack, field=f"{where}.params") from exc
    cit = doc.get("citation")
    if not isinstance(cit, Mapping) or not isinstance(cit.get("source"), str) \
            or not cit["source"].strip():
        raise PackError("citation must be a mapping with a non-empty 'source'",
                        pack=pack, field=f"{where}.citation")
    citation = Citation(cit["source"].strip(), str(cit.get("section", "") or "").strip())
    provisional = doc.get("provisional", False)
    if not isinstance(provisional, bool):
        raise PackError("provisional must be true or false", pack=pack,
                        field=f"{where}.provisional")
    msgs = doc.get("messages")
    if not isinstance(msgs, Mapping):
        raise PackError(f"messages must be a mapping with {list(LANGS)}", pack=pack,
                        field=f"{where}.messages")
    fmt_params = {k: _fmt_value(v) for k, v in raw.items()}
    for name, spec in kind.params.items():
        if name not in fmt_params and not spec.required:
            fmt_params[name] = _fmt_value(
                sorted(str(x) for x in spec.default)
                if isinstance(spec.default, frozenset) else spec.default)
    messages: dict[str, str] = {}
    for lang in LANGS:
        text = msgs.get(lang)
        if not isinstance(text, str) or not text.strip():
            raise PackError(f"missing message in {lang}", pack=pack,
                            field=f"{where}.messages.{lang}")
        try:
            messages[lang] = text.strip().format_map(fmt_params)
        except (KeyError, IndexError, ValueError) as exc:
            raise PackError(f"message refers to an unknown param: {exc}", pack=pack,
                            field=f"{where}.messages.{lang}") from exc
    texts = MappingProxyType({
        effect: MappingProxyType({lang: prefix[lang] + messages[lang] for lang in LANGS})
        for effect, prefix in EFFECT_PREFIX.items()
    })
    static = MappingProxyType({
        effect: Finding(rid, str(citation), effect, texts[effect], MappingProxyType({}),
                        provisional, None)
        for effect in EFFECT_PREFIX
    })
    return Rule(
        static=static,
        id=rid,
        kind=kind.name,
        params=MappingProxyType(params),
        raw_params=MappingProxyType(dict(raw)),
        citation=citation,
        messages=MappingProxyType(messages),
        templates=MappingProxyType({lang: msgs[lang] for lang in LANGS}),
        check=kind.check,
        provisional=provisional,
        texts=texts,
        citation_text=str(citation),
        advisory=kind.name.startswith("flag_"),
    )


def build_pack(doc: Mapping[str, Any], parent: RulePack | None = None) -> RulePack:
    """A validated RulePack from a parsed document, composed onto ``parent`` if it extends one.

    ``parent`` must be given exactly when the document has ``extends`` (and match its id).
    """
    if not isinstance(doc, Mapping):
        raise PackError("a pack must be a mapping")
    pid = doc.get("id")
    if not isinstance(pid, str) or not pid:
        raise PackError("pack id must be a non-empty string", field="id")
    unknown = set(doc) - _PACK_KEYS
    if unknown:
        raise PackError(f"unknown keys {sorted(unknown)}", pack=pid)
    version = doc.get("version")
    if not isinstance(version, (str, int)) or isinstance(version, bool) or version == "":
        raise PackError("version must be a string", pack=pid, field="version")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise PackError("name must be a non-empty string", pack=pid, field="name")
    extends = doc.get("extends")
    if extends is not None:
        if parent is None or parent.id != extends:
            raise PackError(f"extends {extends!r} but parent given is "
                            f"{parent.id if parent else None!r}", pack=pid, field="extends")
    elif parent is not None:
        raise PackError("a parent was given but the pack does not extend one", pack=pid,
                        field="extends")
    tz = doc.get("default_timezone", parent.default_timezone if parent else None)
    if not isinstance(tz, str):
        raise PackError("default_timezone must be an IANA zone name", pack=pid,
                        field="default_timezone")
    try:
        zone(tz)
    except ValueError as exc:
        raise PackError(str(exc), pack=pid, field="default_timezone") from exc
    horizon = doc.get("horizon_days", parent.horizon_days if parent else 400)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise PackError("horizon_days must be a positive integer", pack=pid,
                        field="horizon_days")
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list):
        raise PackError("rules must be a list", pack=pid, field="rules")

    # Compose: parent's rules first, in their order; child entries override, disable or add.
    merged: dict[str, dict[str, Any] | None] = {}
    origin: dict[str, str] = {}
    if parent is not None:
        for r in parent.rules:
            merged[r.id] = _rule_as_doc(r)
            origin[r.id] = f"{parent.id}:{r.id}"
    seen: set[str] = set()
    for i, entry in enumerate(rules_doc):
        where = f"rules[{i}]"
        if not isinstance(entry, Mapping):
            raise PackError("a rule must be a mapping", pack=pid, field=where)
        rid = entry.get("id")
        if not isinstance(rid, str) or not rid:
            raise PackError("rule id must be a non-empty string", pack=pid,
                            field=f"{where}.id")
        if rid in seen:
            raise PackError(f"duplicate rule id {rid!r}", pack=pid, field=f"{where}.id")
        seen.add(rid)
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            raise PackError("disabled must be true or false", pack=pid,
                            field=f"{where}.disabled")
        if disabled:
            if rid not in merged:
                raise PackError(f"cannot disable {rid!r}: no such rule in the parent",
                                pack=pid, field=f"{where}.id")
            merged[rid] = None
            continue
        base = merged.get(rid)
        if base is not None:
            combined = {**base, **{k: v for k, v in entry.items() if k != "params"}}
            combined["params"] = {**base.get("params", {}), **(entry.get("params") or {})}
            if entry.get("kind", base["kind"]) != base["kind"] and "params" in entry:
                combined["params"] = dict(entry["params"])
            merged[rid] = combined
        else:
            merged[rid] = dict(entry)
        origin[rid] = where
    rules = []
    for rid, rdoc in merged.items():
        if rdoc is None:
            continue
        rdoc.pop("disabled", None)
        rules.append(build_rule(rdoc, pack=pid, where=origin[rid]))
    if not rules:
        raise PackError("a pack needs at least one rule", pack=pid, field="rules")
    first = ("local_hours", "stated_inconvenient_times", "no_contact_on_non_working_days")
    order = tuple(sorted(rules, key=lambda r: 0 if r.kind in first else 1))
    return RulePack(id=pid, version=str(version), name=name, rules=tuple(rules),
                    default_timezone=tz, extends=extends, horizon_days=horizon, search_order=order)
