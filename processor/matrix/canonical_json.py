"""Canonical JSON (spec appendix "Signing JSON" → "Canonical JSON").

The encoding is the shortest UTF-8 JSON with object keys sorted by Unicode code point, no
insignificant whitespace, and only integers in ``[-(2**53)+1, (2**53)-1]``. Floats are not
permitted. Every hash, event ID and signature in Matrix is computed over these bytes, so a
value that cannot be encoded exactly is rejected with `CanonicalJsonError` naming its path
(``$.content.body``) rather than silently encoded some other way.

msgspec's encoder with ``order="sorted"`` produces byte-identical output to the spec's
reference (``json.dumps(ensure_ascii=False, separators=(',', ':'), sort_keys=True)``) for
plain dicts, lists, strings, ints, bools and None: keys compare equal whether sorted as code
points or as UTF-8 bytes. It does not check integer ranges, encodes floats, writes NaN as
``null`` and copies `msgspec.Raw` verbatim (unsorted, unvalidated); so `canonical_json`
first walks the value and rejects all of those.

`encode_canonical_trusted` skips the walk: only for values the caller has just decoded from
JSON bytes with the checks already applied (see `processor.matrix.pdu`), where the walk
would repeat work on the hot path.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.errors import InvalidEvent

__all__ = [
    "MAX_SAFE_INTEGER",
    "MIN_SAFE_INTEGER",
    "CanonicalJsonError",
    "canonical_json",
    "check_canonical_value",
    "encode_canonical_trusted",
]

#: The largest integer canonical JSON allows: 2**53 - 1 (exactly representable as a double).
MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -MAX_SAFE_INTEGER

_ENCODER = msgspec.json.Encoder(order="sorted")


class CanonicalJsonError(InvalidEvent):
    """A value that has no canonical JSON encoding (a float, an out-of-range integer, a
    non-string key, `msgspec.Raw`, a lone surrogate...). `field` is the JSON path."""


class _Unencodable(Exception):
    """Raised inside the walk; collects the path while unwinding (cheap when not raised)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def _describe(value: object) -> str:
    if isinstance(value, msgspec.Raw):
        return "msgspec.Raw (raw JSON must be decoded and checked before it is hashed)"
    return f"`{type(value).__name__}`"


def _walk(value: object, strict: bool) -> None:
    t = type(value)
    if t is str or t is bool or value is None:
        return
    if t is int:
        if strict and not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
            raise _Unencodable(
                f"Integer {value} is outside the canonical JSON range ±(2**53 - 1)"
            )
        return
    if t is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _Unencodable(f"Object key {key!r} is not a string")
            try:
                _walk(item, strict)
            except _Unencodable as e:
                e.path.append(f".{key}")
                raise
        return
    if t is list or t is tuple:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            try:
                _walk(item, strict)
            except _Unencodable as e:
                e.path.append(f"[{index}]")
                raise
        return
    if t is float:
        if strict:
            raise _Unencodable(f"Float {value!r} is not allowed in canonical JSON")
        if value != value or value in (float("inf"), float("-inf")):
            raise _Unencodable(f"{value!r} is not a JSON number")
        return
    raise _Unencodable(f"Expected a JSON value, got {_describe(value)}")


def check_canonical_value(value: object, *, strict: bool = True, root: str = "$") -> None:
    """Raise `CanonicalJsonError` naming the path if `value` has no canonical encoding.

    `strict` (room versions 6+, and everything that is not an old event) rejects floats and
    integers outside ±(2**53 - 1). With ``strict=False`` (events of room versions 1–5, which
    the spec says may carry such numbers) they are accepted; NaN/infinity never are.
    """
    try:
        _walk(value, strict)
    except _Unencodable as e:
        path = root + "".join(reversed(e.path))
        raise CanonicalJsonError(e.problem, field=path) from None


def canonical_json(value: Any, *, strict: bool = True) -> bytes:
    """The canonical JSON bytes of `value` (dicts, lists/tuples, str, int, bool, None).

    Raises `CanonicalJsonError` (a `schemas.errors.InvalidEvent`) naming the path of the
    first value that cannot be encoded canonically. See `check_canonical_value` for `strict`.
    """
    check_canonical_value(value, strict=strict)
    return encode_canonical_trusted(value)


def encode_canonical_trusted(value: Any) -> bytes:
    """Canonical JSON of a value already known to pass `check_canonical_value`.

    Only for values freshly decoded from JSON with the number checks done at decode time;
    anything else must go through `canonical_json`.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, UnicodeEncodeError, OverflowError) as e:
        # Lone surrogates in str, or an int beyond 64 bits in a non-strict value.
        raise CanonicalJsonError(f"Value cannot be encoded as JSON: {e}", field="$") from None
