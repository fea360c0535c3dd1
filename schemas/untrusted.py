"""Checks on untrusted JSON bytes that msgspec leaves to the caller.

msgspec validates UTF-8 only in the strings it builds: bytes it skips (unknown fields) or keeps
raw (`msgspec.Raw`, such as an input's ``event``) are decoded later, by another decoder, which
then raises `UnicodeDecodeError` instead of a `msgspec.MsgspecError`. Its nesting limit is the
interpreter's recursion limit, so JSON nested ~1,000 levels deep raises `RecursionError`, and
JSON nested a little less passes the decoder and exhausts the recursion limit of the Python
code that walks the value afterwards. `check_json_bytes` settles both once, up front, with
errors that name the field:

* the bytes are UTF-8 (strict: encoded surrogates such as ``ED A0 80`` are refused, as JSON
  text must be Unicode scalar values);
* arrays and objects nest at most `MAX_JSON_DEPTH` levels (the top-level value is level 1).
"""

from __future__ import annotations

import itertools
import re
from typing import Final

from schemas.errors import SchemaError

__all__ = ["MAX_JSON_DEPTH", "check_json_bytes", "json_path_at"]

#: The deepest nesting accepted, counting the top-level object as 1. An input holds its PDU at
#: level 2 and the PDU's content at 3, so events keep 125 levels of their own; real events
#: nest a handful, and serde_json (Rust homeservers) refuses JSON deeper than 128 levels too.
#: Bounding it keeps every recursive walk of a decoded value far inside the recursion limit.
MAX_JSON_DEPTH: Final = 128

_OPENERS = (ord("["), ord("{"))
#: A JSON string, escapes included (unrolled so that matching is linear).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_MAX_PATH_PARTS = 12


def check_json_bytes(data: bytes, what: str, root: str = "$") -> None:
    """Raise `SchemaError` (message naming `what` and the field under `root`) unless `data`
    is UTF-8 nested at most `MAX_JSON_DEPTH` levels. Whether it is JSON is the decoder's job;
    this costs two byte counts on typical input."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = data[e.start]
            raise SchemaError(
                f"{what} is not valid UTF-8 (byte 0x{byte:02x} at offset {e.start})",
                field=json_path_at(data, e.start, root),
            ) from None
    # Fewer brackets than the limit cannot nest deeper than it: nearly every input stops here.
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return
    offset = _too_deep_at(data)
    if offset is not None:
        raise SchemaError(
            f"{what} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels",
            field=json_path_at(data, offset, root),
        )


def _too_deep_at(data: bytes) -> int | None:
    """The offset of the first bracket opening level `MAX_JSON_DEPTH + 1`, or None. Brackets
    inside strings do not count."""
    depth = 0
    position = 0
    for match in _STRING.finditer(data):
        found = _scan(data[position : match.start()], position, depth)
        if isinstance(found, tuple):
            return found[0]
        depth = found
        position = match.end()
    found = _scan(data[position:], position, depth)
    return found[0] if isinstance(found, tuple) else None


def _scan(chunk: bytes, base: int, depth: int) -> int | tuple[int]:
    """The depth after `chunk` (structural bytes only), or (offset,) where it went too deep."""
    brackets = chunk.translate(None, _NOT_BRACKETS)
    if not brackets:
        return depth
    if depth + brackets.count(b"[") + brackets.count(b"{") <= MAX_JSON_DEPTH:
        return depth + len(brackets) - 2 * (brackets.count(b"]") + brackets.count(b"}"))
    for index, byte in enumerate(brackets):
        depth += 1 if byte in _OPENERS else -1
        if depth > MAX_JSON_DEPTH:
            # The index-th bracket of the chunk: find its offset (rare path).
            offsets = (offset for offset, b in enumerate(chunk) if b in b"[]{}")
            return (base + next(itertools.islice(offsets, index, None)),)
    return depth


def json_path_at(data: bytes, offset: int, root: str = "$") -> str:
    """The JSON path (msgspec style: ``$.event.content.body``, ``$.prev_events[2]``) of the
    value that byte `offset` of `data` belongs to, as far as the JSON before it is well
    formed. For error messages only: linear, and never raises."""
    parts: list[str] = []
    # One frame per open container: [is_object, key or index, expecting a key].
    frames: list[list[object]] = []
    pending_key = ""
    i = 0
    end = min(offset, len(data))
    while i < end:
        c = data[i]
        if c == 0x22:  # a string: a key, or a value
            match = _STRING.match(data, i)
            stop = match.end() if match else len(data)
            frame = frames[-1] if frames else None
            is_key = frame is not None and frame[0] is True and frame[2] is True
            if is_key:
                pending_key = _text(data[i + 1 : stop - 1])
            if offset < stop:
                if is_key:
                    assert frame is not None
                    frame[1] = pending_key
                break
            i = stop
            continue
        if c in (0x7B, 0x5B):  # { [
            frames.append([c == 0x7B, None if c == 0x7B else 0, c == 0x7B])
        elif c in (0x7D, 0x5D):  # } ]
            if frames:
                frames.pop()
        elif c == 0x3A and frames and frames[-1][0] is True:  # :
            frames[-1][1] = pending_key
            frames[-1][2] = False
        elif c == 0x2C and frames:  # ,
            frame = frames[-1]
            if frame[0] is True:
                frame[1] = None
                frame[2] = True
            else:
                frame[1] = int(frame[1]) + 1  # type: ignore[call-overload]
        i += 1
    for is_object, key, _ in frames:
        if key is None:
            break
        parts.append(f".{key}" if is_object else f"[{key}]")
    if len(parts) > _MAX_PATH_PARTS:
        parts = [*parts[: _MAX_PATH_PARTS - 1], f"…({len(parts)} levels)"]
    return root + "".join(parts)


def _text(raw: bytes) -> str:
    """A key for a path: escapes left as written, invalid bytes shown as U+FFFD, shortened."""
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= 40 else text[:37] + "..."
