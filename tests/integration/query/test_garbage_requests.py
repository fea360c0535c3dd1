"""Garbage posted to every endpoint of `roomserver serve` is a Matrix-shaped 4xx, never a 500:
bodies that are not JSON, not UTF-8, nested thousands deep, huge, of the wrong types, with
unknown fields, and (hypothesis) arbitrary JSON built around each request's own fields.
The database holds a real room, so well-formed requests reach the reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.storage import open_store
from schemas import query as q
from tests.integration.pipeline.rooms import ALICE, BOB, RoomBuilder, inputs, process
from tests.integration.query.conftest import Served

PATHS = {name: q.path_of(name) for name, (request, _) in q.ENDPOINTS.items() if request}
#: What a request may be answered with: an answer, or an error the caller caused.
FINE = {200, 400, 404, 409, 413}


@pytest.fixture(scope="module")
def room(served: Served) -> Iterator[RoomBuilder]:
    room = RoomBuilder("10")
    events = room.create(ALICE)
    events += [room.member(BOB, BOB, "join"), room.message(BOB)]
    store = open_store(served.url)
    try:
        process(store, inputs(events))
    finally:
        store.close()
    yield room


def _post(served: Served, path: str, content: bytes) -> tuple[int, Any]:
    response = served.http.post(
        path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code != 500, (path, content[:200], response.text)
    body = response.json() if response.content else None
    if response.status_code != 200:
        assert isinstance(body, dict) and set(body) == {"errcode", "error"}, response.text
        assert body["errcode"].startswith("M_") and body["error"]
    return response.status_code, body


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"room_id":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"

GARBAGE: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"  \n ",
    "not json": b"hello there",
    "truncated": b'{"room_id": "!a:b"',
    "array": b'["!a:b"]',
    "string": b'"!a:b"',
    "number": b"12",
    "null": b"null",
    "invalid utf-8": b'{"room_id": "!\xff\xfe:b", "event_id": "$\xc3"}',
    "lone surrogate": b'{"room_id": "\\ud800", "user_id": "\\udfff"}',
    "nul byte": b'{"room_id": "!a\\u0000:b"}',
    "deep array": DEEP,
    "deep object": DEEP_OBJECT,
    "huge string": b'{"room_id": "' + b"x" * 3_000_000 + b'"}',
    "huge list": b'{"event_ids": [' + b",".join([b'"$e"'] * 200_000) + b"]}",
    "huge number": b'{"limit": 1' + b"0" * 5000 + b"}",
    "unknown field": b'{"room_id": "!a:b", "surprise": 1}',
    "wrong types": b'{"room_id": 1, "event_ids": "x", "limit": "ten", "alias": []}',
    "negative limit": b'{"limit": -1, "min_depth": "x"}',
    "duplicate keys": b'{"room_id": "!a:b", "room_id": 1}',
    "nan": b'{"room_id": NaN}',
}


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_is_a_4xx(served: Served, room: RoomBuilder, name: str, garbage: str) -> None:
    status, _ = _post(served, PATHS[name], GARBAGE[garbage])
    assert status in (400, 413), (name, garbage, status)


def test_a_malformed_request_names_the_field(served: Served, room: RoomBuilder) -> None:
    status, body = _post(served, "/query/room_version", b'{"room_id": 12}')
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert "$.room_id" in body["error"]
    status, body = _post(served, "/query/room_version", b'{"room_id": "!a:b", "x": 1}')
    assert status == 400 and "x" in body["error"]
    status, body = _post(served, "/query/room_version", b"{")
    assert status == 400 and body["errcode"] == "M_NOT_JSON"
    status, body = _post(served, "/query/missing_events", json.dumps(
        {"room_id": room.room_id, "latest_events": ["$x"], "server_name": "s", "limit": 10**6}
    ).encode())
    assert status == 400 and "$.limit" in body["error"]


def test_unknown_paths_and_methods(served: Served) -> None:
    assert _post(served, "/query/nothing", b"{}")[0] == 404
    response = served.http.get("/query/room_version")
    assert response.status_code == 405
    assert response.json()["errcode"] == "M_UNRECOGNIZED"


# Arbitrary JSON values, including the awkward ones: long strings, unusual code points,
# big numbers, nesting.
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=300) | st.text(min_size=250, max_size=300)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)


@st.composite
def _requests(draw: st.DrawFn, room_id: str) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(PATHS)))
    request_type = q.ENDPOINTS[name][0]
    fields = list(request_type.__struct_fields__)
    body: dict[str, Any] = {}
    for field in draw(st.lists(st.sampled_from(fields), unique=True)):
        body[field] = draw(
            _VALUES | st.just(room_id) | st.lists(st.sampled_from([room_id, "$e", ""]))
            | st.sampled_from(["#a:b", "!a:b", "@u:s", "s"])
        )
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=20))] = draw(_VALUES)
    return name, body


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_arbitrary_json_is_never_a_500(served: Served, room: RoomBuilder, data: st.DataObject)\
        -> None:
    name, body = data.draw(_requests(room.room_id))
    status, _ = _post(served, PATHS[name], json.dumps(body).encode())
    assert status in FINE, (name, body, status)
