"""State: snapshots made of content-addressed blocks (tables `state_blocks`,
`state_snapshots`); the layout is processor/storage/README.md's "State" and
`processor.core.state_blocks`.

Writing: `store_state` plans the snapshot with the pure `state_blocks` functions, finds out
which of the planned blocks (and the snapshot itself) already exist — the in-process cache
first, then ONE lookup by hash for the rest — and buffers only the new ones, under NIDs
reserved at once. A block that contains an event inserted in this very batch cannot exist
yet, so the common case (a state event's delta) costs no lookup at all.

Reading: a snapshot and every block it is missing come in one round trip; later reads are
served from the shared cache of immutable blocks.

Two batches running at once (two partitions) may both find a state absent and both buffer it:
on a fresh database every room's first snapshot is the same empty state. At commit the rows
are inserted with ON CONFLICT (hash) DO NOTHING, so the second waits for the first to commit
and then skips the row instead of failing on the unique hash; the batch then adopts the
stored NIDs (`_adopt_stored_state`): references in its own rows are rewritten before they are
written, and the NID it handed out is kept as an alias of the stored one in the store's
caches, as callers hold snapshot NIDs across batches (`BatchCore._surviving_snapshot`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from processor.core import state_blocks
from processor.core.state_blocks import MalformedBlock, SnapshotPlan, StateBlock
from processor.errors import CorruptState, StorageError
from processor.nids import (
    EventNID,
    RoomNID,
    StateBlockNID,
    StateKeyTuple,
    StateSnapshotNID,
)
from processor.storage.batch_core import BatchCore, NidKind, SnapshotRow
from processor.storage.caches import SnapshotMeta, StoreCaches
from processor.storage.tables import STATE_BLOCKS, STATE_SNAPSHOTS, block_row, snapshot_row

__all__ = ["COMPOSED_PER_BATCH", "NO_SNAPSHOT", "StateMixin"]

#: How many composed full states a batch keeps at hand.
COMPOSED_PER_BATCH = 8

#: "No snapshot": the empty state.
NO_SNAPSHOT = StateSnapshotNID(0)

#: Rows another batch committed first are skipped, not an error (see the module docstring).
_SKIP_STORED = "ON CONFLICT (hash) DO NOTHING"


class StateMixin(BatchCore):
    def __init__(self, caches: StoreCaches) -> None:
        super().__init__(caches)
        #: Full states composed in this batch (the processor stores a state event's state
        #: after against the state before, usually the previous snapshot of this batch).
        self._composed: OrderedDict[StateSnapshotNID, Mapping[StateKeyTuple, EventNID]] = (
            OrderedDict()
        )

    # ================================================================ backend queries

    def _fetch_state(
        self, snapshot_nids: Sequence[int], block_nids: Sequence[int]
    ) -> tuple[list[SnapshotMeta], list[tuple[int, bytes, bytes]]]:
        """The snapshots' rows, and (nid, hash, data) of every block they name plus
        `block_nids`; missing rows are simply absent. Two queries here; PostgreSQL makes it
        one round trip."""
        metas: list[SnapshotMeta] = []
        wanted: dict[int, None] = dict.fromkeys(block_nids)
        for nid, stored, chunk_count, chunk_level in self._select_in(
            "SELECT state_snapshot_nid, block_nids, chunk_count, chunk_level"
            " FROM state_snapshots WHERE state_snapshot_nid {values}",
            list(snapshot_nids),
            "bigint",
            binary=True,
        ):
            nids = self._nid_tuple(stored, "state snapshot", nid, "block_nids")
            metas.append(
                SnapshotMeta(
                    StateSnapshotNID(nid),
                    tuple(StateBlockNID(b) for b in nids),
                    chunk_count,
                    chunk_level,
                )
            )
            wanted.update(dict.fromkeys(nids))
        blocks = self._select_in(
            "SELECT state_block_nid, hash, data FROM state_blocks WHERE state_block_nid {values}",
            list(wanted),
            "bigint",
            binary=True,
        )
        return metas, [(nid, bytes(h), bytes(data)) for nid, h, data in blocks]

    def _lookup_state_hashes(
        self, block_hashes: list[bytes], snapshot_hashes: list[bytes]
    ) -> tuple[dict[bytes, int], dict[bytes, int]]:
        """NIDs of stored blocks and snapshots with these hashes (PostgreSQL: one query)."""
        found: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        for index, (table, column, hashes) in enumerate(
            (
                ("state_blocks", "state_block_nid", block_hashes),
                ("state_snapshots", "state_snapshot_nid", snapshot_hashes),
            )
        ):
            if hashes:
                rows = self._select_in(
                    f"SELECT hash, {column} FROM {table} WHERE hash {{values}}",
                    hashes,
                    "bytea",
                    binary=True,
                )
                found[index].update((bytes(h), n) for h, n in rows)
        return found

    # ================================================================ reading

    def _load_snapshots(
        self, snapshot_nids: Sequence[StateSnapshotNID]
    ) -> dict[StateSnapshotNID, tuple[SnapshotMeta, list[StateBlock]]]:
        """The snapshots and their blocks, in order: caches first, then ONE round trip.
        Keyed by the NIDs asked for (an alias included: `_surviving_snapshot`)."""
        pending = self.pending
        caches = self._caches
        metas: dict[StateSnapshotNID, SnapshotMeta] = {}
        blocks: dict[StateBlockNID, StateBlock] = {}
        unknown_snapshots: list[int] = []
        real = {nid: self._surviving_snapshot(nid) for nid in snapshot_nids}
        with caches.lock:
            for nid in real.values():
                row = pending.snapshots.get(nid)
                meta = row.meta if row is not None else caches.snapshots.get(nid)
                if meta is None:
                    unknown_snapshots.append(nid)
                    continue
                metas[nid] = meta
                for block_nid in meta.block_nids:
                    block = pending.blocks.get(block_nid) or caches.blocks.get(block_nid)
                    if block is not None:
                        blocks[block_nid] = block
        missing_blocks = [
            b for meta in metas.values() for b in meta.block_nids if b not in blocks
        ]
        if unknown_snapshots or missing_blocks:
            rows, block_rows = self._fetch_state(unknown_snapshots, missing_blocks)
            for meta in rows:
                metas[meta.snapshot_nid] = meta
            fetched: list[tuple[StateBlockNID, StateBlock]] = []
            for row_nid, block_hash, data in block_rows:
                block_nid = StateBlockNID(row_nid)
                if block_nid in blocks:
                    continue
                try:
                    entries = state_blocks.decode_block(data)
                except MalformedBlock as e:
                    raise CorruptState(f"state block {block_nid} is unreadable: {e}") from e
                block = StateBlock(entries, bytes(block_hash))
                blocks[block_nid] = block
                fetched.append((block_nid, block))
            # Rows read from the state tables are committed (a batch writes its own only at
            # commit) and immutable: share them right away.
            caches.add_blocks(fetched)
            caches.add_snapshots((b"", meta) for meta in rows)
        result: dict[StateSnapshotNID, tuple[SnapshotMeta, list[StateBlock]]] = {}
        for asked, nid in real.items():
            meta = metas.get(nid)
            if meta is None:
                raise CorruptState(f"unknown state snapshot NID {asked}")
            lost = [b for b in meta.block_nids if b not in blocks]
            if lost:
                raise CorruptState(
                    f"state snapshot {nid} names state blocks that do not exist: {lost[:10]}"
                )
            result[asked] = (meta, [blocks[b] for b in meta.block_nids])
        return result

    def _snapshot_plan(self, snapshot_nid: StateSnapshotNID) -> SnapshotPlan:
        meta, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
        return SnapshotPlan(tuple(blocks), meta.chunk_count, meta.chunk_level)

    def load_state(self, snapshot_nid: StateSnapshotNID) -> dict[StateKeyTuple, EventNID]:
        """The full state at a snapshot (0 = the empty state). The caller owns the dict."""
        if not snapshot_nid:
            return {}
        return dict(self._composed_state(snapshot_nid))

    def _composed_state(self, snapshot_nid: StateSnapshotNID) -> Mapping[StateKeyTuple, EventNID]:
        """The full state, shared with the caches: never mutate it."""
        state = self._composed.get(snapshot_nid)
        if state is not None:
            return state
        with self._caches.lock:
            state = self._caches.states.get(snapshot_nid)
        if state is None:
            _, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
            state = state_blocks.compose(b.entries for b in blocks)
        self._remember_composed(snapshot_nid, state)
        return state

    def _remember_composed(
        self, snapshot_nid: StateSnapshotNID, state: Mapping[StateKeyTuple, EventNID]
    ) -> None:
        composed = self._composed
        composed[snapshot_nid] = state
        composed.move_to_end(snapshot_nid)
        while len(composed) > COMPOSED_PER_BATCH:
            composed.popitem(last=False)

    def load_state_entries(
        self, snapshot_nid: StateSnapshotNID, keys: Iterable[StateKeyTuple]
    ) -> dict[StateKeyTuple, EventNID]:
        """The events at `keys` (absent keys left out), without composing the full state."""
        if not snapshot_nid:
            return {}
        _, blocks = self._load_snapshots([snapshot_nid])[snapshot_nid]
        entries = [b.entries for b in blocks]
        found: dict[StateKeyTuple, EventNID] = {}
        for key in keys:
            event = state_blocks.lookup(entries, key)
            if event is not None:
                found[key] = event
        return found

    def state_difference(
        self, old_snapshot_nid: StateSnapshotNID, new_snapshot_nid: StateSnapshotNID
    ) -> tuple[dict[StateKeyTuple, EventNID], dict[StateKeyTuple, EventNID]]:
        """(removed, added): apply removes then adds to the old state to get the new one."""
        wanted = [n for n in (old_snapshot_nid, new_snapshot_nid) if n]
        loaded = self._load_snapshots(wanted) if wanted else {}
        old = loaded[old_snapshot_nid][1] if old_snapshot_nid else []
        new = loaded[new_snapshot_nid][1] if new_snapshot_nid else []
        return state_blocks.state_difference(old, new)

    # ================================================================ writing

    def store_state(
        self,
        room_nid: RoomNID,
        state: Mapping[StateKeyTuple, EventNID],
        *,
        base_snapshot_nid: StateSnapshotNID = NO_SNAPSHOT,
    ) -> StateSnapshotNID:
        """The snapshot of `state`, stored once. With a base, the base's blocks are reused and
        only the difference is written (a delta block)."""
        if not base_snapshot_nid:
            return self._store_plan(room_nid, state_blocks.plan_full_snapshot(state))
        base_state = self._composed_state(base_snapshot_nid)
        changes = state_blocks.compute_changes(base_state, state)
        if not changes:
            return base_snapshot_nid
        base = self._snapshot_plan(base_snapshot_nid)
        snapshot_nid = self._store_plan(room_nid, state_blocks.plan_snapshot(base, changes))
        self._remember_composed(snapshot_nid, dict(state))
        return snapshot_nid

    def store_state_delta(
        self,
        room_nid: RoomNID,
        base_snapshot_nid: StateSnapshotNID,
        changes: Mapping[StateKeyTuple, EventNID],
    ) -> StateSnapshotNID:
        if not base_snapshot_nid:
            return self._store_plan(
                room_nid, state_blocks.plan_full_snapshot({k: v for k, v in changes.items() if v})
            )
        base = self._snapshot_plan(base_snapshot_nid)
        entries = [b.entries for b in base.blocks]
        effective = {
            k: v for k, v in changes.items() if (state_blocks.lookup(entries, k) or 0) != v
        }
        if not effective:
            return base_snapshot_nid
        return self._store_plan(room_nid, state_blocks.plan_snapshot(base, effective))

    def _store_plan(self, room_nid: RoomNID, plan: SnapshotPlan) -> StateSnapshotNID:
        pending = self.pending
        caches = self._caches
        snap_hash = plan.hash
        block_nids: dict[bytes, int] = {}
        unknown: list[StateBlock] = []
        with caches.lock:
            known_snapshot = pending.snapshot_nids_by_hash.get(
                snap_hash
            ) or caches.snapshot_nids_by_hash.get(snap_hash)
            if known_snapshot is not None:
                return known_snapshot
            for block in plan.blocks:
                if block.hash in block_nids:
                    continue
                known = pending.block_nids_by_hash.get(
                    block.hash
                ) or caches.block_nids_by_hash.get(block.hash)
                if known is None:
                    unknown.append(block)
                else:
                    block_nids[block.hash] = known
        # A block holding an event first inserted in this batch cannot be stored already.
        new_events = pending.events
        surely_new = [b for b in unknown if any(e in new_events for e in b.entries.values())]
        maybe_stored = [b for b in unknown if b not in surely_new]
        if maybe_stored or not surely_new:
            found_blocks, found_snapshots = self._lookup_state_hashes(
                [b.hash for b in maybe_stored], [] if surely_new else [snap_hash]
            )
            if snap_hash in found_snapshots:
                found_nid = StateSnapshotNID(found_snapshots[snap_hash])
                with caches.lock:
                    caches.snapshot_nids_by_hash.put(snap_hash, found_nid)
                return found_nid
            block_nids.update(found_blocks)
        new_blocks = [b for b in dict.fromkeys(unknown) if b.hash not in block_nids]
        if new_blocks:
            for block, reserved in zip(
                new_blocks,
                self._reserve_nids(NidKind.STATE_BLOCK, len(new_blocks)),
                strict=True,
            ):
                block_nids[block.hash] = reserved
                pending.blocks[StateBlockNID(reserved)] = block
                pending.block_nids_by_hash[block.hash] = StateBlockNID(reserved)
        snapshot_nid = StateSnapshotNID(self._reserve_nids(NidKind.STATE_SNAPSHOT, 1)[0])
        meta = SnapshotMeta(
            snapshot_nid,
            tuple(StateBlockNID(block_nids[b.hash]) for b in plan.blocks),
            plan.chunk_count,
            plan.chunk_level,
        )
        pending.snapshots[snapshot_nid] = SnapshotRow(meta, snap_hash, room_nid)
        pending.snapshot_nids_by_hash[snap_hash] = snapshot_nid
        return snapshot_nid

    # ================================================================ commit

    def _write_state_rows(self) -> None:
        """Write the buffered blocks and snapshots (first at commit: other rows name them),
        adopting the NIDs of any another batch committed meanwhile."""
        pending = self.pending
        if not pending.blocks and not pending.snapshots:
            return
        # In hash order, so that two batches inserting several of the same rows wait for
        # each other in one order and never deadlock.
        blocks = sorted(pending.blocks.items(), key=lambda item: item[1].hash)
        snapshots = sorted(pending.snapshots.values(), key=lambda row: row.hash)
        p, nid_array = self.PARAM, self._nid_array
        new_blocks, new_snapshots = self._execute_together(
            [
                (
                    STATE_BLOCKS.insert(p, on_conflict=_SKIP_STORED),
                    [block_row(nid, block) for nid, block in blocks],
                ),
                (
                    STATE_SNAPSHOTS.insert(p, on_conflict=_SKIP_STORED),
                    [snapshot_row(r.meta, r.hash, r.room_nid, nid_array) for r in snapshots],
                ),
            ]
        )
        if new_blocks < len(blocks) or new_snapshots < len(snapshots):
            self._adopt_stored_state(blocks, snapshots)

    def _adopt_stored_state(
        self,
        blocks: list[tuple[StateBlockNID, StateBlock]],
        snapshots: list[SnapshotRow],
    ) -> None:
        """Some rows were skipped: another batch committed the same content first. Use its
        NIDs instead of ours, in this batch's rows and in what it publishes."""
        # A new statement sees what the other batch committed (READ COMMITTED).
        stored_blocks, stored_snapshots = self._lookup_state_hashes(
            [b.hash for _, b in blocks], [row.hash for row in snapshots]
        )
        if len(stored_blocks) < len(blocks) or len(stored_snapshots) < len(snapshots):
            raise StorageError("state rows vanished while the batch was writing them")
        pending = self.pending
        block_map = {nid: StateBlockNID(stored_blocks[b.hash]) for nid, b in blocks}
        pending.blocks = {block_map[nid]: block for nid, block in pending.blocks.items()}
        pending.block_nids_by_hash = {b.hash: nid for nid, b in pending.blocks.items()}
        fixed: list[SnapshotRow] = []
        pending.snapshots = {}
        for row in snapshots:
            ours = row.meta.snapshot_nid
            stored = StateSnapshotNID(stored_snapshots[row.hash])
            if stored != ours:  # theirs is the same content: its blocks are the same too
                pending.snapshot_aliases[ours] = stored
                pending.snapshot_nids_by_hash[row.hash] = stored
                continue
            block_nids = tuple(block_map.get(b, b) for b in row.meta.block_nids)
            if block_nids != row.meta.block_nids:
                row = replace(row, meta=replace(row.meta, block_nids=block_nids))
                fixed.append(row)
            pending.snapshots[ours] = row
        if fixed:  # inserted with our block NIDs, before we knew theirs
            self._execute_many(
                f"UPDATE state_snapshots SET block_nids = {self.PARAM}"
                f" WHERE state_snapshot_nid = {self.PARAM}",
                [(self._nid_array(r.meta.block_nids), r.meta.snapshot_nid) for r in fixed],
            )
        aliases = pending.snapshot_aliases
        if not aliases:
            return
        for nid, event in pending.events.items():
            if event.state_snapshot_nid in aliases:
                pending.events[nid] = replace(
                    event, state_snapshot_nid=aliases[event.state_snapshot_nid]
                )
        for room_nid, room in pending.rooms.items():
            if room.current_snapshot_nid in aliases:
                pending.rooms[room_nid] = replace(
                    room, current_snapshot_nid=aliases[room.current_snapshot_nid]
                )
        stored_events = [
            (aliases[snap], event)
            for event, snap in pending.stored_event_snapshots.items()
            if snap in aliases
        ]
        if stored_events:  # `update_event` wrote these at once
            self._execute_many(
                f"UPDATE events SET state_snapshot_nid = {self.PARAM}"
                f" WHERE event_nid = {self.PARAM}",
                stored_events,
            )

    def _publish_state(self) -> None:
        """After the commit: share the blocks, snapshots and states this batch wrote."""
        pending = self.pending
        caches = self._caches
        caches.add_blocks(pending.blocks.items())
        caches.add_snapshots((row.hash, row.meta) for row in pending.snapshots.values())
        aliases = pending.snapshot_aliases
        if aliases:
            caches.add_snapshot_aliases(aliases, pending.snapshot_nids_by_hash)
        caches.add_states((aliases.get(n, n), s) for n, s in self._composed.items())

