"""Canonical JSON against the spec appendix ("Signing JSON" → "Canonical JSON" → "Examples")
and the range/float rules of room versions 6+ ("Canonical JSON" fragment v6)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.matrix.canonical_json import (
    MAX_SAFE_INTEGER,
    CanonicalJsonError,
    canonical_json,
)
from schemas.errors import InvalidEvent

# (input JSON text, expected canonical JSON text), transcribed from the spec appendix.
APPENDIX_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
]


@pytest.mark.parametrize(("given_json", "expected"), APPENDIX_EXAMPLES)
def test_appendix_examples(given_json: str, expected: str) -> None:
    assert canonical_json(json.loads(given_json)) == expected.encode("utf-8")


def test_appendix_negative_zero_and_exponent() -> None:
    # Appendix: {"a": -0, "b": 1e10} -> {"a":0,"b":10000000000}. The numbers are integral;
    # a JSON parser reads 1e10 as a float, so it is converted to the integer it denotes
    # before encoding (canonical JSON itself never encodes floats).
    def integral(text: str) -> int:
        value = float(text)
        assert value.is_integer()
        return int(value)

    parsed = msgspec.json.Decoder(float_hook=integral).decode(b'{"a": -0, "b": 1e10}')
    assert canonical_json(parsed) == b'{"a":0,"b":10000000000}'


def test_integer_range_boundaries() -> None:
    assert canonical_json({"n": MAX_SAFE_INTEGER}) == b'{"n":9007199254740991}'
    assert canonical_json({"n": -MAX_SAFE_INTEGER}) == b'{"n":-9007199254740991}'
    with pytest.raises(CanonicalJsonError) as info:
        canonical_json({"content": {"n": [1, 2**53]}})
    assert info.value.field == "$.content.n[1]"
    assert "outside the canonical JSON range" in str(info.value)
    with pytest.raises(CanonicalJsonError):
        canonical_json(-(2**53))


def test_floats_rejected_with_path() -> None:
    with pytest.raises(CanonicalJsonError) as info:
        canonical_json({"content": {"info": {"w": 1.5}}})
    assert info.value.field == "$.content.info.w"
    assert str(info.value) == (
        "Float 1.5 is not allowed in canonical JSON - at `$.content.info.w`"
    )
    # CanonicalJsonError is the project's typed decode error.
    assert isinstance(info.value, InvalidEvent)


def test_non_strict_accepts_old_room_numbers_but_not_nan() -> None:
    # Room versions 1-5 "might not be fully compliant" (appendix warning).
    assert canonical_json({"n": 2**60}, strict=False) == b'{"n":1152921504606846976}'
    assert canonical_json({"f": 0.5}, strict=False) == b'{"f":0.5}'
    with pytest.raises(CanonicalJsonError):
        canonical_json({"f": float("nan")}, strict=False)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": msgspec.Raw(b'{"z":1,"a":2}')}, "$.a"),
        ({1: "x"}, "$"),
        ({"a": {"b"}}, "$.a"),
        ({"a": b"bytes"}, "$.a"),
    ],
)
def test_unencodable_values_rejected(value: Any, field: str) -> None:
    with pytest.raises(CanonicalJsonError) as info:
        canonical_json(value)
    assert info.value.field == field


def test_raw_is_named_in_the_message() -> None:
    with pytest.raises(CanonicalJsonError, match=r"msgspec\.Raw"):
        canonical_json({"content": msgspec.Raw(b"{}")})


def test_lone_surrogate_rejected() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"a": "\ud800"})


def test_control_characters_escaped_like_the_reference() -> None:
    value = {"s": "\x00\x08\t\n\x0c\r\x1f\x7f\"\\/\u2028"}
    assert canonical_json(value) == b'{"s":"\\u0000\\b\\t\\n\\f\\r\\u001f\x7f\\"\\\\/\xe2\x80\xa8"}'


# Hypothesis: arbitrary JSON values within the canonical domain.
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text()
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _reference(value: Any) -> bytes:
    """The spec appendix's reference implementation."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True
    ).encode("UTF-8")


@given(_json_values)
def test_matches_reference_implementation_and_round_trips(value: Any) -> None:
    encoded = canonical_json(value)
    assert encoded == _reference(value)
    assert json.loads(encoded) == value


@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=8), st.randoms())
def test_independent_of_key_insertion_order(value: dict[str, Any], rnd: Any) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(value)
