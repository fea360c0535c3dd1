"""In-process caches shared by every batch of one store: only immutable, committed data.

Names <-> NIDs never change once assigned; state blocks and snapshots are immutable and
content-addressed. A batch publishes what it created here only after its commit, so a rolled
back batch can never leave a NID in the cache that the database does not have.
All caches are bounded LRUs guarded by one lock (the Kafka shell runs partitions in threads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from processor.core.state_blocks import StateBlock
from processor.nids import (
    EventNID,
    RoomNID,
    StateBlockNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.storage.base import RoomRecord

K = TypeVar("K")
V = TypeVar("V")

#: Defaults: about 1 KB per snapshot, ~150 bytes per cached block entry.
DEFAULT_BLOCK_CACHE_ENTRIES = 1_000_000
DEFAULT_SNAPSHOT_CACHE = 100_000
DEFAULT_HASH_CACHE = 200_000
DEFAULT_NAME_CACHE = 200_000
DEFAULT_COMPOSED_STATES = 16


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """A stored snapshot's row: its blocks in order and how they are laid out."""

    snapshot_nid: StateSnapshotNID
    block_nids: tuple[StateBlockNID, ...]
    chunk_count: int
    chunk_level: int


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries, roughly (not
    thread-safe).

    Two generations instead of an ordered dict: a hit in the young generation is one dict
    lookup (the hot path: the handler does dozens per event), a hit in the old one moves the
    entry to the young one, and when the young generation is full the old one is dropped
    whole. It holds between `capacity / 2` and `capacity` entries.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._generation = max(1, capacity // 2)
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.pop(key, None)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        young = self._young
        young[key] = value
        if len(young) > self._generation:
            self._old = young
            self._young = {}

    def pop(self, key: K) -> None:
        self._young.pop(key, None)
        self._old.pop(key, None)

    def clear(self) -> None:
        self._young = {}
        self._old = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old.keys() - self._young.keys())


class BlockCache:
    """Decoded state blocks by NID, bounded by the total number of entries held."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries = 0
        self._data: OrderedDict[StateBlockNID, StateBlock] = OrderedDict()

    def get(self, nid: StateBlockNID) -> StateBlock | None:
        block = self._data.get(nid)
        if block is not None:
            self._data.move_to_end(nid)
        return block

    def put(self, nid: StateBlockNID, block: StateBlock) -> None:
        old = self._data.pop(nid, None)
        if old is not None:
            self.entries -= len(old)
        self._data[nid] = block
        self.entries += len(block)
        while self.entries > self.max_entries and len(self._data) > 1:
            _, evicted = self._data.popitem(last=False)
            self.entries -= len(evicted)

    def clear(self) -> None:
        self._data.clear()
        self.entries = 0


class StoreCaches:
    """Every cache a store keeps, behind one lock."""

    def __init__(
        self,
        *,
        block_cache_entries: int = DEFAULT_BLOCK_CACHE_ENTRIES,
        snapshot_cache: int = DEFAULT_SNAPSHOT_CACHE,
        hash_cache: int = DEFAULT_HASH_CACHE,
        name_cache: int = DEFAULT_NAME_CACHE,
        composed_states: int = DEFAULT_COMPOSED_STATES,
    ) -> None:
        self.lock = threading.Lock()
        self.blocks = BlockCache(block_cache_entries)
        self.snapshots: LRU[StateSnapshotNID, SnapshotMeta] = LRU(snapshot_cache)
        self.block_nids_by_hash: LRU[bytes, StateBlockNID] = LRU(hash_cache)
        self.snapshot_nids_by_hash: LRU[bytes, StateSnapshotNID] = LRU(hash_cache)
        self.type_nids: LRU[str, int] = LRU(name_cache)
        self.type_names: LRU[int, str] = LRU(name_cache)
        self.key_nids: LRU[str, int] = LRU(name_cache)
        self.key_names: LRU[int, str] = LRU(name_cache)
        #: Room records by NID, for their immutable part (room ID, version) only.
        self.room_identities: LRU[RoomNID, RoomRecord] = LRU(name_cache)
        #: Snapshot NIDs a batch handed out for content another batch stored first -> the
        #: stored snapshot's NID (`processor.storage.state`). Never evicted: callers may
        #: still hold such a NID; a race lost, so a handful per process.
        self.snapshot_aliases: dict[StateSnapshotNID, StateSnapshotNID] = {}
        #: Composed full states of recent snapshots (each a dict of up to ~100k entries).
        self.states: LRU[StateSnapshotNID, Mapping[StateKeyTuple, EventNID]] = LRU(
            composed_states
        )

    def clear_state(self) -> None:
        """Forget every cached block and snapshot (benchmarks measure cold loads with it)."""
        with self.lock:
            self.blocks.clear()
            self.snapshots.clear()
            self.block_nids_by_hash.clear()
            self.snapshot_nids_by_hash.clear()
            self.states.clear()

    def add_blocks(self, blocks: Iterable[tuple[StateBlockNID, StateBlock]]) -> None:
        with self.lock:
            for nid, block in blocks:
                self.blocks.put(nid, block)
                self.block_nids_by_hash.put(block.hash, nid)

    def add_snapshots(self, snapshots: Iterable[tuple[bytes, SnapshotMeta]]) -> None:
        with self.lock:
            for snapshot_hash, meta in snapshots:
                self.snapshots.put(meta.snapshot_nid, meta)
                if snapshot_hash:
                    self.snapshot_nids_by_hash.put(snapshot_hash, meta.snapshot_nid)

    def add_snapshot_aliases(
        self,
        aliases: Mapping[StateSnapshotNID, StateSnapshotNID],
        nids_by_hash: Mapping[bytes, StateSnapshotNID],
    ) -> None:
        """`aliases`: handed-out NID -> stored NID; `nids_by_hash`: the hashes of a batch's
        snapshots (only those of stored NIDs are kept)."""
        stored = set(aliases.values())
        with self.lock:
            self.snapshot_aliases.update(aliases)
            for snapshot_hash, nid in nids_by_hash.items():
                if nid in stored:
                    self.snapshot_nids_by_hash.put(snapshot_hash, nid)

    def add_states(
        self, states: Iterable[tuple[StateSnapshotNID, Mapping[StateKeyTuple, EventNID]]]
    ) -> None:
        with self.lock:
            for nid, state in states:
                self.states.put(nid, state)

    def add_names(self, type_nids: Mapping[str, int], key_nids: Mapping[str, int]) -> None:
        with self.lock:
            for name, nid in type_nids.items():
                self.type_nids.put(name, nid)
                self.type_names.put(nid, name)
            for name, nid in key_nids.items():
                self.key_nids.put(name, nid)
                self.key_names.put(nid, name)
