"""The tamper-evident audit log: append in the caller's transaction, verify the whole log.

Every chain is a sequence of entries with gap-free ``seq`` (1, 2, 3, ...). An entry's hash is
``HMAC-SHA256(key, prev_hash || canonical JSON of [seq, at, kind, actor, borrower_id, subject,
outcome, rules, payload])`` and its ``prev_hash`` is the hash of the entry before it ('' for the
first). So an edited entry no longer matches its hash, a deleted entry leaves a gap and a
broken link, and — for borrower chains, whose head (seq, hash) is also kept on the borrower
row — a deleted newest entry disagrees with the head. Without the key nobody can forge a
consistent replacement.

Chains: a borrower's id (the borrower row holds the head; the caller holds the borrower lock,
``parley.store.db.lock_borrower``), or a name starting with ``_`` such as ``'_system'`` (no
head row: the newest entry of a system chain can be deleted undetected; see VerifyReport).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select, text

from parley.store.hot import Hot
from parley.store.models.base import table_of
from parley.store.models.contacts import AuditLog, DecisionReason
from parley.store.models.loanbook import Borrower

SYSTEM_CHAIN = "_system"
RULES_MAX = 1000  # audit_log.rules column width
# Gate decisions carry their deny/advise findings as decision_reason rows too.
DECISION_KINDS = frozenset({"gate.decision", "gate.preview"})

_audit = table_of(AuditLog)
_reason = table_of(DecisionReason)
_borrower = table_of(Borrower)

# Hot statements (parley.store.hot): every contact appends.
SQL_AUDIT_INSERT = Hot(_audit.insert().returning(_audit.c.id))
SQL_HEAD = Hot(select(_borrower.c.audit_seq, _borrower.c.audit_head).where(
    _borrower.c.id == bindparam("bid")))
SQL_HEAD_UPDATE = Hot(_borrower.update().where(_borrower.c.id == bindparam("bid"))
                      .values(audit_seq=bindparam("seq"), audit_head=bindparam("hash")))


# --- canonical form and hashing ----------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in audit payload")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes):
        raise ValueError("bytes in audit payload (store a reference, not raw data)")
    raise TypeError(f"not JSON-serialisable in an audit payload: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text kept as is; datetimes as UTC ISO 8601."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default, allow_nan=False)


def _at_text(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit entry time must be tz-aware")
    return at.astimezone(UTC).isoformat()


def entry_hash(key: bytes, prev_hash: str, *, seq: int, at: datetime, kind: str, actor: str,
               borrower_id: str | None, subject: str, outcome: str, rules: Sequence[str],
               payload: Any) -> str:
    """The HMAC of one entry (payload: the parsed JSON value, not its text)."""
    return _entry_hash_of_text(key, prev_hash, seq=seq, at=at, kind=kind, actor=actor,
                               borrower_id=borrower_id, subject=subject, outcome=outcome,
                               rules=rules, payload_text=canonical_json(payload))


def _entry_hash_of_text(key: bytes, prev_hash: str, *, seq: int, at: datetime, kind: str,
                        actor: str, borrower_id: str | None, subject: str, outcome: str,
                        rules: Sequence[str], payload_text: str) -> str:
    """``entry_hash`` given the payload's canonical text, so a new entry serialises its payload
    once for both the hash and the row. The body is the canonical list with the payload last:
    the JSON of a list is its items' JSON joined by commas, so splicing the text in is exact."""
    head = canonical_json([seq, _at_text(at), kind, actor, borrower_id, subject, outcome,
                           list(rules)])
    body = head[:-1] + "," + payload_text + "]"
    return hmac.new(key, (prev_hash + body).encode(), hashlib.sha256).hexdigest()


def audit_key(ctx: Any) -> bytes:
    """The audit HMAC key, derived from ``settings.secret_key`` (own label, so it is not the
    session-signing key itself)."""
    return _derive_key(ctx.settings.secret_key.get_secret_value())


@lru_cache(maxsize=8)
def _derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"parley/audit-log/v1", hashlib.sha256).digest()


def _rules_column(rules: Sequence[str]) -> tuple[list[str], str]:
    """Deduplicated rule ids (first-seen order) and the ' a b ' column text (whole ids only,
    within the column width; the hash covers exactly the ids stored)."""
    seen: list[str] = []
    for r in rules:
        if r and r not in seen:
            seen.append(r)
    kept: list[str] = []
    size = 1
    for r in seen:
        if size + len(r) + 1 > RULES_MAX:
            break
        kept.append(r)
        size += len(r) + 1
    return kept, (" " + " ".join(kept) + " ") if kept else ""


def _chain_lock_id(chain_key: str) -> int:
    """A stable signed 64-bit number for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.sha256(chain_key.encode()).digest()[:8], "big", signed=True)


# --- append --------------------------------------------------------------------------------


def audit_append(conn: Connection, *, chain_key: str, kind: str, payload: dict[str, Any],
                 at: datetime, actor: str = "system", borrower_id: str | None = None,
                 subject: str = "", outcome: str = "", rules: Sequence[str] = (),
                 key: bytes) -> int:
    """Append one entry to ``chain_key`` in the caller's transaction; returns audit_log.id.

    chain_key: a borrower id (its row holds the chain head and must exist; the caller holds
        the borrower lock; ``borrower_id`` defaults to it), or a system chain starting with
        '_' (locked here: an advisory transaction lock on PostgreSQL, the IMMEDIATE write
        transaction on SQLite).
    rules: the deciding rule ids (deny/advise for gate decisions); empty = none.
    """
    if not chain_key:
        raise ValueError("audit chain_key must not be empty")
    if chain_key.startswith("_"):
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _chain_lock_id(chain_key)})
        row = conn.execute(
            select(_audit.c.seq, _audit.c.hash)
            .where(_audit.c.chain_key == chain_key)
            .order_by(_audit.c.seq.desc())
            .limit(1)
        ).first()
        seq, head = (row[0], row[1]) if row is not None else (0, "")
        return _insert(conn, chain_key, seq, head, kind=kind, payload=payload, at=at, actor=actor,
                       borrower_id=borrower_id, subject=subject, outcome=outcome, rules=rules,
                       key=key, borrower_head=False)
    row = SQL_HEAD.first(conn, {"bid": chain_key})
    if row is None:
        raise ValueError(f"audit chain {chain_key!r} is neither a borrower nor a '_' system chain")
    return _insert(conn, chain_key, row[0] or 0, row[1] or "", kind=kind, payload=payload, at=at,
                   actor=actor, borrower_id=borrower_id if borrower_id is not None else chain_key,
                   subject=subject, outcome=outcome, rules=rules, key=key, borrower_head=True)


def append_for_borrower(ctx: Any, conn: Connection, borrower_id: str, kind: str,
                        payload: dict[str, Any], *, actor: str | None = "system",
                        at: datetime | None = None, subject: str = "") -> int:
    """Append an entry about a borrower to that borrower's own chain; returns audit_log.id.

    Shared by the services that record what happened to a borrower's case (agreements,
    casework, placements), so each such entry is on the borrower's chain *and* carries
    ``borrower_id`` (found by borrower), signed with the key from ``ctx``. The caller holds
    the borrower lock (``parley.store.db.lock_borrower``).
    actor: staff id, borrower id or 'system'; empty or None = 'system'. at: None = the
    context clock's now. subject: the record the entry is about (agreement id, loan id); ''
    = the borrower as a whole.
    """
    return audit_append(conn, chain_key=borrower_id, kind=kind, payload=payload,
                        at=ctx.clock.now() if at is None else at, actor=actor or "system",
                        borrower_id=borrower_id, subject=subject, key=audit_key(ctx))


def prepare_entry(*, chain_key: str, head_seq: int, head_hash: str, kind: str,
                  payload: dict[str, Any], at: datetime, actor: str = "system",
                  borrower_id: str | None = None, subject: str = "", outcome: str = "",
                  rules: Sequence[str] = (), key: bytes) -> dict[str, Any]:
    """The audit_log row (column -> value) that follows the head (head_seq, head_hash)."""
    seq = head_seq + 1
    kept, rules_text = _rules_column(rules)
    payload_text = canonical_json(payload)
    h = _entry_hash_of_text(key, head_hash, seq=seq, at=at, kind=kind, actor=actor,
                            borrower_id=borrower_id, subject=subject, outcome=outcome,
                            rules=kept, payload_text=payload_text)
    return {"chain_key": chain_key, "seq": seq, "at": at, "kind": kind, "actor": actor,
            "borrower_id": borrower_id, "subject": subject, "outcome": outcome,
            "rules": rules_text, "payload": payload_text, "prev_hash": head_hash, "hash": h}


def append_at_head(conn: Connection, *, chain_key: str, head_seq: int, head_hash: str,
                   kind: str, payload: dict[str, Any], at: datetime, actor: str = "system",
                   borrower_id: str | None = None, subject: str = "", outcome: str = "",
                   rules: Sequence[str] = (), key: bytes) -> tuple[int, int, str]:
    """``audit_append`` for a borrower chain whose head the caller already read under the
    borrower lock (the permit path: saves a round trip). Returns (id, seq, hash)."""
    row = prepare_entry(chain_key=chain_key, head_seq=head_seq, head_hash=head_hash, kind=kind,
                        payload=payload, at=at, actor=actor,
                        borrower_id=borrower_id if borrower_id is not None else chain_key,
                        subject=subject, outcome=outcome, rules=rules, key=key)
    return write_at_head(conn, row), row["seq"], row["hash"]


def write_at_head(conn: Connection, row: dict[str, Any]) -> int:
    """Insert a prepared borrower-chain entry and move the chain head to it; its id."""
    audit_id = int(SQL_AUDIT_INSERT.one(conn, row)[0])
    SQL_HEAD_UPDATE.run(conn, {"bid": row["chain_key"], "seq": row["seq"], "hash": row["hash"]})
    return audit_id


def _insert(conn: Connection, chain_key: str, head_seq: int, head_hash: str, *, kind: str,
            payload: dict[str, Any], at: datetime, actor: str, borrower_id: str | None,
            subject: str, outcome: str, rules: Sequence[str], key: bytes,
            borrower_head: bool) -> int:
    if borrower_head:
        return append_at_head(conn, chain_key=chain_key, head_seq=head_seq, head_hash=head_hash,
                              kind=kind, payload=payload, at=at, actor=actor,
                              borrower_id=borrower_id, subject=subject, outcome=outcome,
                              rules=rules, key=key)[0]
    row = prepare_entry(chain_key=chain_key, head_seq=head_seq, head_hash=head_hash, kind=kind,
                        payload=payload, at=at, actor=actor, borrower_id=borrower_id,
                        subject=subject, outcome=outcome, rules=rules, key=key)
    return int(SQL_AUDIT_INSERT.one(conn, row)[0])


# --- verify --------------------------------------------------------------------------------


class AuditProblem(NamedTuple):
    """One problem found: which chain, which entry (seq), its audit_log id (None when the
    entry itself is missing) and what is wrong."""

    chain_key: str
    seq: int
    audit_id: int | None
    what: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """ok: no problem found. entries_checked: audit_log rows read.
    problems: every problem, in chain order; empty when ok."""

    ok: bool
    entries_checked: int
    problems: tuple[AuditProblem, ...]


def expected_reasons(payload: Mapping[str, Any]) -> Counter[tuple[str, str]]:
    """The (rule_id, effect) decision_reason rows a gate decision payload implies."""
    decision = payload.get("decision") if isinstance(payload, Mapping) else None
    out: Counter[tuple[str, str]] = Counter()
    if not isinstance(decision, Mapping):
        return out
    for r in decision.get("reasons") or ():
        if isinstance(r, Mapping) and r.get("effect") in ("deny", "advise"):
            out[(str(r.get("rule")), str(r.get("effect")))] += 1
    return out


def _rows(conn: Connection, stmt: Any, batch: int = 2000) -> Iterator[Any]:
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
    yield from result


def verify_audit(ctx: Any) -> VerifyReport:
    """Check every chain end to end; see the module docstring for what is detected."""
    key = audit_key(ctx)
    problems: list[AuditProblem] = []
    checked = 0
    with ctx.db.read() as conn:
        reasons: dict[int, Counter[tuple[str, str]]] = {}
        for audit_id, rule_id, effect in _rows(
            conn, select(_reason.c.audit_id, _reason.c.rule_id, _reason.c.effect)
        ):
            reasons.setdefault(int(audit_id), Counter())[(rule_id, effect)] += 1
        seen_ids: set[int] = set()
        tails: dict[str, tuple[int, str]] = {}
        chain: str | None = None
        prev_seq, prev_hash = 0, ""
        cols = _audit.c
        stmt = select(cols.id, cols.chain_key, cols.seq, cols.at, cols.kind, cols.actor,
                      cols.borrower_id, cols.subject, cols.outcome, cols.rules, cols.payload,
                      cols.prev_hash, cols.hash).order_by(cols.chain_key, cols.seq)
        for row in _rows(conn, stmt):
            checked += 1
            (aid, ck, seq, at, kind, actor, bid, subject, outcome, rules_text, payload_text,
             row_prev, row_hash) = row
            if ck != chain:
                if chain is not None:
                    tails[chain] = (prev_seq, prev_hash)
                chain, prev_seq, prev_hash = ck, 0, ""
            if seq != prev_seq + 1:
                missing = (f"entries {prev_seq + 1}..{seq - 1} are missing"
                           if seq - 1 > prev_seq + 1 else f"entry {prev_seq + 1} is missing")
                for gone in range(prev_seq + 1, seq):
                    problems.append(AuditProblem(
                        ck, gone, None, f"deleted: {missing} (the chain jumps from seq "
                                        f"{prev_seq} to {seq}, entry id {aid})"))
            if row_prev != prev_hash and seq == prev_seq + 1:
                problems.append(AuditProblem(
                    ck, seq, aid, "broken link: prev_hash does not match the previous entry "
                                  "(an entry before it was replaced or deleted)"))
            try:
                payload = json.loads(payload_text)
            except ValueError:
                problems.append(AuditProblem(ck, seq, aid, "edited: payload is not valid JSON"))
                payload = None
            if payload is not None:
                rules = rules_text.split() if rules_text else []
                try:
                    want = entry_hash(key, row_prev, seq=seq, at=at, kind=kind, actor=actor,
                                      borrower_id=bid, subject=subject, outcome=outcome,
                                      rules=rules, payload=payload)
                except (ValueError, TypeError):
                    want = ""
                if not hmac.compare_digest(want, row_hash):
                    # The payload is untrustworthy, so its reasons are not compared as well.
                    problems.append(AuditProblem(ck, seq, aid,
                                                 "edited: hash does not match the entry's content"))
                elif kind in DECISION_KINDS:
                    have = reasons.get(int(aid), Counter())
                    exp = expected_reasons(payload)
                    if have != exp:
                        problems.append(AuditProblem(
                            ck, seq, aid,
                            f"decision_reason rows disagree with the payload (rows "
                            f"{sorted(have.elements())}, payload {sorted(exp.elements())})"))
            seen_ids.add(int(aid))
            prev_seq, prev_hash = seq, row_hash
        if chain is not None:
            tails[chain] = (prev_seq, prev_hash)
        for aid in sorted(set(reasons) - seen_ids):
            problems.append(AuditProblem("?", 0, aid, "decision_reason rows for a missing entry"))
        heads = {bid: (int(sq or 0), hd or "") for bid, sq, hd in conn.execute(
            select(_borrower.c.id, _borrower.c.audit_seq, _borrower.c.audit_head)
            .where(_borrower.c.audit_seq > 0))}
        orphan = [c for c in tails if not c.startswith("_") and c not in heads]
        if orphan:
            for bid, sq, hd in conn.execute(
                select(_borrower.c.id, _borrower.c.audit_seq, _borrower.c.audit_head)
                .where(_borrower.c.id.in_(orphan))
            ):
                heads[bid] = (int(sq or 0), hd or "")
        for bid in sorted(set(heads) | set(orphan)):
            head_seq, head_hash = heads.get(bid, (0, ""))
            tail_seq, tail_hash = tails.get(bid, (0, ""))
            if bid not in heads:
                problems.append(AuditProblem(bid, tail_seq, None,
                                             "chain of an unknown borrower (no head row)"))
            elif tail_seq < head_seq:
                for gone in range(tail_seq + 1, head_seq + 1):
                    problems.append(AuditProblem(
                        bid, gone, None, f"deleted: newest entry missing (the borrower's head "
                                         f"is seq {head_seq}, the chain ends at seq {tail_seq})"))
            elif tail_seq > head_seq or tail_hash != head_hash:
                problems.append(AuditProblem(
                    bid, tail_seq, None,
                    f"head mismatch: the borrower's head is seq {head_seq}, the chain ends at "
                    f"seq {tail_seq} with a different hash"))
    problems.sort(key=lambda p: (p.chain_key, p.seq))
    return VerifyReport(not problems, checked, tuple(problems))
