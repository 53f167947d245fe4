"""An audit entry's hash is the HMAC of one canonical JSON list ending with the payload; a new
entry splices its payload's text in (serialised once), which must give the very same bytes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from parley.services.audit import canonical_json, entry_hash, prepare_entry

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)


@given(payload=st.dictionaries(st.text(max_size=8), JSON, max_size=5),
       seq=st.integers(1, 10**9), kind=st.text(max_size=10), actor=st.text(max_size=10),
       rules=st.lists(st.text(alphabet="abc.-", min_size=1, max_size=8), unique=True, max_size=3),
       minutes=st.integers(0, 10**6))
def test_the_spliced_hash_equals_the_hash_of_the_whole_list(payload, seq, kind, actor, rules,
                                                           minutes) -> None:  # type: ignore[no-untyped-def]
    key = b"k" * 32
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    whole = canonical_json([seq, at.isoformat(), kind, actor, "B1", "L1", "allow", list(rules),
                            payload])
    expect = hmac.new(key, ("prev" + whole).encode(), hashlib.sha256).hexdigest()
    assert entry_hash(key, "prev", seq=seq, at=at, kind=kind, actor=actor, borrower_id="B1",
                      subject="L1", outcome="allow", rules=rules, payload=payload) == expect
    row = prepare_entry(chain_key="B1", head_seq=seq - 1, head_hash="prev", kind=kind,
                        payload=payload, at=at, actor=actor, borrower_id="B1", subject="L1",
                        outcome="allow", rules=rules, key=key)
    assert row["hash"] == expect and row["payload"] == canonical_json(payload)
