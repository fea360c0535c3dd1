"""State blocks and snapshots: the pure arithmetic behind how room state is stored.

A **state block** is an immutable map ``(event type NID, state key NID) -> event NID``,
identified by the hash of its sorted entries, so identical blocks are stored once. An event
NID of 0 in a block is a *tombstone*: the key is absent from the state.

A **state snapshot** is an ORDERED tuple of at most `MAX_BLOCKS` blocks; composing them in
order, a later block's entry wins over an earlier one's. The order is part of the snapshot's
identity (its hash covers the block hashes in order): nothing here ever sorts blocks, so "later
block wins" can never silently become "higher NID wins".

Layout of a snapshot, as planned by `plan_snapshot`::

    [chunk 1, ..., chunk C, delta 1, ..., delta D]

* the *chunks* are the room's full state at some point, sorted by key and cut by
  content-defined chunking (`chunk_state`): a cut falls after any key whose hash has
  `chunk_level` low zero bits, so boundaries depend only on the keys present. Changing which
  event a key points at changes one chunk; adding or removing a key changes at most two.
  Re-chunking a state after many changes therefore reuses every chunk nobody touched.
* the *deltas* are the changes since, kept like a tiered log-structured merge: each new change
  set is one block; whenever the last `TIER` deltas are of the same size class they are merged
  into one. Deltas stay few (a handful per size class) and each entry is rewritten only about
  log4(total changes) times.
* when the deltas grow past a quarter of the chunks' size, or the snapshot would exceed
  `MAX_BLOCKS`, the full state is re-chunked ("folded"), which shares every untouched chunk
  with the older snapshots.

Everything here is a plain function over plain data: no I/O, no global mutable state.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from processor.nids import EventNID, StateKeyTuple

__all__ = [
    "FOLD_MIN_ENTRIES",
    "FOLD_RATIO",
    "MAX_BLOCKS",
    "MAX_CHUNKS",
    "TIER",
    "MalformedBlock",
    "SnapshotPlan",
    "StateBlock",
    "block_hash",
    "choose_chunk_level",
    "chunk_state",
    "compose",
    "compute_changes",
    "decode_block",
    "encode_block",
    "lookup",
    "plan_full_snapshot",
    "plan_snapshot",
    "size_class",
    "snapshot_hash",
    "state_difference",
]

#: The most blocks a snapshot may combine (the seed design's limit).
MAX_BLOCKS = 64
#: Re-chunking picks a chunk level that keeps the chunk count at or below this, leaving
#: room for deltas under `MAX_BLOCKS`.
MAX_CHUNKS = 40
#: Number of same-size-class deltas merged into one.
TIER = 4
#: Deltas are folded into the chunks once they hold more than max(this, chunks' size / 4).
FOLD_MIN_ENTRIES = 64
FOLD_RATIO = 4
#: Chunk levels: average chunk size is 2**level entries.
MIN_CHUNK_LEVEL = 5
#: Chunks are force-cut at this multiple of the average size (bounds the worst case).
MAX_CHUNK_FACTOR = 4
#: Target chunk count when a chunk level must be (re)chosen.
TARGET_CHUNKS = 16

_BLOCK_FORMAT = 1
_FLAG_ZLIB = 0x80
_COMPRESS_FROM = 16  # entries; smaller blocks are not worth zlib's header
_HASH_PERSON = b"rs-state-block"
_SNAP_PERSON = b"rs-state-snap"
_BIG_ENDIAN = sys.byteorder == "big"
_WIDTHS = (("b", 1), ("h", 2), ("i", 4), ("q", 8))
_MASK64 = (1 << 64) - 1


class MalformedBlock(ValueError):
    """Stored block bytes cannot be decoded (storage reports it as CorruptState)."""


@dataclass(frozen=True, slots=True, eq=False)
class StateBlock:
    """An immutable block of state entries. Equality and hashing follow the content hash.

    `entries` must not be mutated once the block exists (blocks are shared by caches).
    """

    entries: Mapping[StateKeyTuple, EventNID]
    hash: bytes

    @classmethod
    def of(cls, entries: Mapping[StateKeyTuple, EventNID]) -> StateBlock:
        entries = dict(entries)
        return cls(entries, block_hash(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateBlock) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)


# -- encoding ------------------------------------------------------------------------------


def _columns(
    entries: Mapping[StateKeyTuple, EventNID],
) -> tuple[list[int], list[int], list[int]]:
    items = sorted(entries.items())
    return [k[0] for k, _ in items], [k[1] for k, _ in items], [e for _, e in items]


def _le(arr: array[int]) -> bytes:
    if _BIG_ENDIAN:
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def block_hash(entries: Mapping[StateKeyTuple, EventNID]) -> bytes:
    """16-byte hash of a block's entries, independent of insertion order and of encoding."""
    types, keys, events = _columns(entries)
    h = hashlib.blake2b(digest_size=16, person=_HASH_PERSON)
    h.update(_le(array("q", types)))
    h.update(_le(array("q", keys)))
    h.update(_le(array("q", events)))
    return h.digest()


def snapshot_hash(block_hashes: Sequence[bytes]) -> bytes:
    """16-byte hash of an ordered list of blocks. Order matters: it decides who wins."""
    return hashlib.blake2b(b"".join(block_hashes), digest_size=16, person=_SNAP_PERSON).digest()


def _deltas(values: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *values], values, strict=False)]


def _pack_column(values: list[int]) -> bytes:
    lo, hi = (min(values), max(values)) if values else (0, 0)
    for code, width in _WIDTHS:
        bound = 1 << (8 * width - 1)
        if -bound <= lo and hi < bound:
            return bytes([width]) + _le(array(code, values))
    raise ValueError("state block value out of int64 range")


def encode_block(entries: Mapping[StateKeyTuple, EventNID]) -> bytes:
    """Compact bytes for a block: sorted entries, three delta-coded columns of the narrowest
    integer width, zlib-compressed when that pays."""
    types, keys, events = _columns(entries)
    payload = b"".join(
        [
            len(types).to_bytes(4, "little"),
            _pack_column(_deltas(types)),
            _pack_column(_deltas(keys)),
            _pack_column(_deltas(events)),
        ]
    )
    if len(types) >= _COMPRESS_FROM:
        packed = zlib.compress(payload, 6)
        if len(packed) < len(payload):
            return bytes([_BLOCK_FORMAT | _FLAG_ZLIB]) + packed
    return bytes([_BLOCK_FORMAT]) + payload


def _unpack_column(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    if pos >= len(data):
        raise MalformedBlock("truncated column header")
    width = data[pos]
    code = {w: c for c, w in _WIDTHS}.get(width)
    if code is None:
        raise MalformedBlock(f"bad column width {width}")
    end = pos + 1 + width * count
    if end > len(data):
        raise MalformedBlock("truncated column")
    arr = array(code)
    arr.frombytes(data[pos + 1 : end])
    if _BIG_ENDIAN:
        arr.byteswap()
    return list(itertools.accumulate(arr)), end


def decode_block(data: bytes) -> dict[StateKeyTuple, EventNID]:
    """Inverse of `encode_block`; raises `MalformedBlock` on anything unexpected."""
    if not data:
        raise MalformedBlock("empty block data")
    head = data[0]
    if head & ~_FLAG_ZLIB != _BLOCK_FORMAT:
        raise MalformedBlock(f"unknown block format {head & ~_FLAG_ZLIB}")
    payload = data[1:]
    if head & _FLAG_ZLIB:
        try:
            payload = zlib.decompress(payload)
        except zlib.error as e:
            raise MalformedBlock(f"bad compression: {e}") from e
    if len(payload) < 4:
        raise MalformedBlock("truncated entry count")
    count = int.from_bytes(payload[:4], "little")
    types, pos = _unpack_column(payload, 4, count)
    keys, pos = _unpack_column(payload, pos, count)
    events, pos = _unpack_column(payload, pos, count)
    if pos != len(payload):
        raise MalformedBlock("trailing bytes")
    if count and (min(types) <= 0 or min(keys) <= 0 or min(events) < 0):
        raise MalformedBlock("NID out of range (types and state keys > 0, events >= 0)")
    entries: dict[StateKeyTuple, EventNID] = dict(
        zip(zip(types, keys, strict=True), events, strict=True)  # type: ignore[arg-type]
    )
    if len(entries) != count:
        raise MalformedBlock("duplicate state key in block")
    return entries


# -- reading -------------------------------------------------------------------------------


def compose(blocks: Iterable[Mapping[StateKeyTuple, EventNID]]) -> dict[StateKeyTuple, EventNID]:
    """The state a snapshot's blocks describe: later blocks win, tombstones remove."""
    state: dict[StateKeyTuple, EventNID] = {}
    tombstones = False
    for block in blocks:
        state.update(block)
        tombstones = tombstones or 0 in block.values()
    if tombstones:
        return {k: v for k, v in state.items() if v}
    return state


def lookup(
    blocks: Sequence[Mapping[StateKeyTuple, EventNID]], key: StateKeyTuple
) -> EventNID | None:
    """The event at `key` without composing the state: the last block naming it wins."""
    for block in reversed(blocks):
        event = block.get(key)
        if event is not None:
            return event or None
    return None


def compute_changes(
    old: Mapping[StateKeyTuple, EventNID], new: Mapping[StateKeyTuple, EventNID]
) -> dict[StateKeyTuple, EventNID]:
    """The entries that turn `old` into `new`; removed keys map to 0 (a tombstone)."""
    changes = {k: v for k, v in new.items() if old.get(k) != v}
    new_keys = sum(1 for k in changes if k not in old)
    if len(new) - new_keys != len(old):  # some keys of `old` are gone from `new`
        changes.update((k, EventNID(0)) for k in old if k not in new)
    return changes


def state_difference(
    old: Sequence[StateBlock], new: Sequence[StateBlock]
) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
    """(removed, added) between two snapshots, looking only at the blocks they don't share.

    A key found only in shared blocks has the same winner in both snapshots provided the shared
    blocks come in the same relative order; when they don't (never produced by
    `plan_snapshot`, but legal), the states are composed and compared in full.
    """
    old_hashes = {b.hash for b in old}
    new_hashes = {b.hash for b in new}
    shared = old_hashes & new_hashes
    if [b.hash for b in old if b.hash in shared] != [b.hash for b in new if b.hash in shared]:
        return _full_difference(compose(b.entries for b in old), compose(b.entries for b in new))
    candidates: set[StateKeyTuple] = set()
    for b in old:
        if b.hash not in shared:
            candidates.update(b.entries)
    for b in new:
        if b.hash not in shared:
            candidates.update(b.entries)
    old_entries = [b.entries for b in old]
    new_entries = [b.entries for b in new]
    removed: dict[StateKeyTuple, EventNID] = {}
    added: dict[StateKeyTuple, EventNID] = {}
    for key in candidates:
        before = lookup(old_entries, key)
        after = lookup(new_entries, key)
        if before != after:
            if before is not None:
                removed[key] = before
            if after is not None:
                added[key] = after
    return removed, added


def _full_difference(
    old: Mapping[StateKeyTuple, EventNID], new: Mapping[StateKeyTuple, EventNID]
) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
    removed = {k: v for k, v in old.items() if new.get(k) != v}
    added = {k: v for k, v in new.items() if old.get(k) != v}
    return removed, added


# -- content-defined chunking --------------------------------------------------------------


def _mix64(x: int) -> int:
    # splitmix64's finaliser: a fixed, well-spread integer hash (Python's hash() is not stable
    # across versions for this purpose, and chunk boundaries must be the same everywhere).
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def _key_hash(key: StateKeyTuple) -> int:
    return _mix64((_mix64(key[0] & _MASK64) + 0x9E3779B97F4A7C15 * (key[1] & _MASK64)) & _MASK64)


def chunk_state(
    state: Mapping[StateKeyTuple, EventNID], level: int
) -> list[dict[StateKeyTuple, EventNID]]:
    """Cut the key-sorted state into chunks at content-defined boundaries.

    A chunk ends after a key whose hash has `level` low zero bits (so boundaries move only
    where keys are added or removed), or after 2**level * MAX_CHUNK_FACTOR entries.
    Tombstones are dropped: chunks describe a full state.
    """
    mask = (1 << level) - 1
    cap = (1 << level) * MAX_CHUNK_FACTOR
    chunks: list[dict[StateKeyTuple, EventNID]] = []
    current: dict[StateKeyTuple, EventNID] = {}
    for key in sorted(state):
        event = state[key]
        if not event:
            continue
        current[key] = event
        if (_key_hash(key) & mask) == 0 or len(current) >= cap:
            chunks.append(current)
            current = {}
    if current:
        chunks.append(current)
    return chunks


def choose_chunk_level(entries: int, previous_level: int = 0) -> int:
    """The chunk level for a state of `entries` keys. The previous level is kept while it
    still gives a reasonable chunk count, so re-chunking keeps its boundaries (hysteresis)."""
    if previous_level >= MIN_CHUNK_LEVEL:
        expected = entries >> previous_level
        if (expected <= MAX_CHUNKS // 2) and (expected >= 2 or previous_level == MIN_CHUNK_LEVEL):
            return previous_level
    level = MIN_CHUNK_LEVEL
    while (entries >> level) > TARGET_CHUNKS:
        level += 1
    return level


# -- planning snapshots --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """The blocks of a snapshot, in order, and how they are laid out.

    `blocks[:chunk_count]` are content-defined chunks at `chunk_level`; the rest are deltas.
    """

    blocks: tuple[StateBlock, ...]
    chunk_count: int
    chunk_level: int

    @property
    def hash(self) -> bytes:
        return snapshot_hash([b.hash for b in self.blocks])


def size_class(entries: int) -> int:
    """log4 of a block's size: deltas of the same class get merged `TIER` at a time."""
    return entries.bit_length() // 2


def plan_full_snapshot(
    state: Mapping[StateKeyTuple, EventNID], previous_level: int = 0
) -> SnapshotPlan:
    """A snapshot of `state` made of chunks only (a new room, a rewritten state, a fold)."""
    live = sum(1 for v in state.values() if v)
    level = choose_chunk_level(live, previous_level)
    while True:
        chunks = chunk_state(state, level)
        if len(chunks) <= MAX_CHUNKS:
            break
        level += 1
    return SnapshotPlan(tuple(StateBlock.of(c) for c in chunks), len(chunks), level)


def plan_snapshot(base: SnapshotPlan, changes: Mapping[StateKeyTuple, EventNID]) -> SnapshotPlan:
    """The snapshot `base` + `changes` (0 = remove the key), sharing `base`'s blocks.

    Changes that would not alter the state must already be left out (see `compute_changes`);
    with no changes at all, `base` itself is returned.
    """
    if not changes:
        return base
    chunks = list(base.blocks[: base.chunk_count])
    deltas = list(base.blocks[base.chunk_count :])
    deltas.append(StateBlock.of(changes))
    # Keep the deltas' size classes non-increasing, at most TIER - 1 of a class: a block
    # bigger than the one before it absorbs it; TIER blocks of one class become one block.
    while len(deltas) >= 2:
        last = size_class(len(deltas[-1]))
        if last > size_class(len(deltas[-2])):
            take = 2
        elif len(deltas) >= TIER and all(
            size_class(len(d)) == last for d in deltas[-TIER:-1]
        ):
            take = TIER
        else:
            break
        merged: dict[StateKeyTuple, EventNID] = {}
        for d in deltas[-take:]:
            merged.update(d.entries)
        deltas[-take:] = [StateBlock.of(merged)]
    delta_size = sum(len(d) for d in deltas)
    chunk_size = sum(len(c) for c in chunks)
    if (
        len(chunks) + len(deltas) > MAX_BLOCKS
        or delta_size > max(FOLD_MIN_ENTRIES, chunk_size // FOLD_RATIO)
    ):
        full = compose(b.entries for b in (*chunks, *deltas))
        return plan_full_snapshot(full, base.chunk_level)
    return SnapshotPlan((*chunks, *deltas), len(chunks), base.chunk_level)
