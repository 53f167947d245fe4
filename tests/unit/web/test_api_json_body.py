"""The API's JSON body reader: json.loads, except that a key given twice in any object is
refused with its path (the first one in document order)."""

from __future__ import annotations

import json

import pytest

from parley.faces.api.routing import DuplicateKey, loads_unique


@pytest.mark.parametrize("raw", ['{"a": 1, "b": [1, {"c": null}], "d": {"e": "é"}}', "[]", '"x"',
                                 '{"a": {"a": {"a": 1}}}', b'{"k": "\\u0000"}'])
def test_a_body_without_duplicates_reads_as_json_loads_reads_it(raw: str | bytes) -> None:
    assert loads_unique(raw) == json.loads(raw)


@pytest.mark.parametrize(("raw", "path"), [
    ('{"loan_id": "L1", "loan_id": "L2"}', ("loan_id",)),
    ('{"a": 1, "b": {"c": 1, "c": 1}}', ("b", "c")),
    ('{"h": [{}, {"r": 1, "r": 2}]}', ("h", 1, "r")),
    ('[{"x": 1}, {"y": 1, "y": 1}]', (1, "y")),
    ('{"a": {"q": 1, "q": 2}, "b": {"p": 1, "p": 2}}', ("a", "q")),  # the first in the document
    ('{"a": 1, "a": 2, "b": {"c": 1, "c": 2}}', ("a",)),
    ('{"z": 1, "y": 2, "z": 3}', ("z",)),
])
def test_a_key_given_twice_is_refused_with_its_path(raw: str, path: tuple[object, ...]) -> None:
    with pytest.raises(DuplicateKey) as err:
        loads_unique(raw)
    assert err.value.path == path


def test_a_duplicate_deep_down_is_found_without_recursion() -> None:
    raw = '{"a": ' * 900 + '{"k": 1, "k": 2}' + "}" * 900
    with pytest.raises(DuplicateKey) as err:
        loads_unique(raw)
    assert err.value.path == ("a",) * 900 + ("k",)


def test_malformed_json_still_raises_json_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_unique('{"a": ')
