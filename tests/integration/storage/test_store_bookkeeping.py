"""Storage contract, part 3: memberships, invites, redactions, input offsets and the outbox.

Offsets and outbox rows are the exactly-once machinery (README.md, "Delivery is exactly
once"): written in the batch's transaction, they commit or vanish together with its effects;
the outbox is read back in commit order per partition and trimmed once relayed. Memberships
and invites are only written by the processor, so their rows are checked with SQL.
"""

from __future__ import annotations

from processor.nids import EventNID, StateKeyNID
from processor.storage.base import Batch
from tests.integration.storage.conftest import StoreUnderTest
from tests.integration.storage.helpers import add_event, add_room


def _memberships(store: StoreUnderTest, room_nid: int) -> dict[int, tuple[str, int]]:
    rows = store.sql(
        "SELECT target_nid, membership, event_nid FROM memberships"
        f" WHERE room_nid = {int(room_nid)}"
    )
    return {t: (m, e) for t, m, e in rows}


def _active_invites(store: StoreUnderTest, user_id: str) -> list[tuple[int, int]]:
    rows = store.sql(
        "SELECT room_nid, event_nid FROM invites"
        f" WHERE target_user_id = '{user_id}' AND NOT retired ORDER BY event_nid"
    )
    return [(r, e) for r, e in rows]


def test_memberships_last_write_wins(store: StoreUnderTest) -> None:
    alice, bob = StateKeyNID(2001), StateKeyNID(2002)
    with store.store.batch() as batch:
        room = add_room(batch)
        other = add_room(batch, "!other:example.org")
        batch.set_membership(room.room_nid, alice, "join", EventNID(10))
        batch.set_membership(room.room_nid, bob, "invite", EventNID(11))
        batch.set_membership(other.room_nid, alice, "ban", EventNID(12))
        # Twice in one batch: the last write is the one stored.
        batch.set_membership(room.room_nid, bob, "join", EventNID(13))
    assert _memberships(store, room.room_nid) == {alice: ("join", 10), bob: ("join", 13)}
    with store.store.batch() as batch:  # over a stored row: replaced
        batch.set_membership(room.room_nid, alice, "leave", EventNID(14))
    assert _memberships(store, room.room_nid) == {alice: ("leave", 14), bob: ("join", 13)}
    assert _memberships(store, other.room_nid) == {alice: ("ban", 12)}


def test_invites_are_retired_once(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        other = add_room(batch, "!other:example.org")
        batch.insert_invite(room.room_nid, "@bob:example.org", EventNID(20))
        batch.insert_invite(room.room_nid, "@bob:example.org", EventNID(21))
        batch.insert_invite(other.room_nid, "@bob:example.org", EventNID(22))
        batch.insert_invite(room.room_nid, "@carol:example.org", EventNID(23))
        batch.insert_invite(room.room_nid, "@carol:example.org", EventNID(23))  # no-op
    assert _active_invites(store, "@bob:example.org") == [
        (room.room_nid, 20),
        (room.room_nid, 21),
        (other.room_nid, 22),
    ]
    with store.store.batch() as batch:
        assert batch.retire_invites(room.room_nid, "@bob:example.org") == [20, 21]
        assert batch.retire_invites(room.room_nid, "@bob:example.org") == []
    with store.reopen().batch() as batch:
        assert batch.retire_invites(room.room_nid, "@nobody:example.org") == []
    assert _active_invites(store, "@bob:example.org") == [(other.room_nid, 22)]
    assert _active_invites(store, "@carol:example.org") == [(room.room_nid, 23)]


def _pending(batch: Batch, targets: list[str]) -> dict[str, list[int]]:
    _, redactions = batch.select_prefetch([], targets)
    return {t: [r.redaction_event_nid for r in rs] for t, rs in redactions.items()}


def test_pending_redactions(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        batch.insert_redaction(EventNID(31), "$target", False)
        batch.insert_redaction(EventNID(30), "$target", False)
        batch.insert_redaction(EventNID(32), "$elsewhere", True)
    with store.store.batch() as batch:
        # Not yet validated ones only, oldest (lowest NID) first.
        assert _pending(batch, ["$target", "$elsewhere", "$none"]) == {"$target": [30, 31]}
        # Re-inserting a redaction once checked validates it (the processor does this).
        batch.insert_redaction(EventNID(30), "$target", True)
        assert _pending(batch, ["$target"]) == {"$target": [31]}  # seen before the commit
    with store.reopen().batch() as batch:
        assert _pending(batch, ["$target"]) == {"$target": [31]}
        # Redactions written in this batch count, and validating one before the batch
        # writes it sticks.
        batch.insert_redaction(EventNID(33), "$later", False)
        batch.insert_redaction(EventNID(34), "$later", False)
        batch.insert_redaction(EventNID(34), "$later", True)
        assert _pending(batch, ["$later"]) == {"$later": [33]}
    with store.reopen().batch() as batch:
        assert _pending(batch, ["$later", "$target"]) == {"$later": [33], "$target": [31]}


def test_prefetch_reads_events_and_pending_redactions_at_once(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        stored = add_event(batch, room.room_nid, "$stored")
        batch.insert_redaction(EventNID(40), "$stored", False)
        batch.insert_redaction(EventNID(41), "$gone", True)
    with store.store.batch() as batch:
        buffered = add_event(batch, room.room_nid, "$buffered")
        events, redactions = batch.select_prefetch(
            ["$stored", "$buffered", "$absent", "$stored"], ["$stored", "$gone", "$absent"]
        )
        assert {i: e.event_nid for i, e in events.items()} == {
            "$stored": stored, "$buffered": buffered
        }
        assert {t: [r.redaction_event_nid for r in rs] for t, rs in redactions.items()} == {
            "$stored": [40]
        }
        # Nothing to look up: still an answer.
        assert batch.select_prefetch([], []) == ({}, {})


def test_input_offsets_move_by_compare_and_set(store: StoreUnderTest) -> None:
    topic = "roomserver.input"
    with store.store.batch() as batch:
        assert batch.select_input_offset(topic, 0) is None
        assert batch.claim_input_offset(topic, 0, 0, 100)  # 0 = none stored yet
        assert batch.claim_input_offset(topic, 1, 0, 7)
        assert batch.select_input_offset(topic, 0) == 100  # seen before the commit
    with store.store.batch() as batch:
        assert not batch.claim_input_offset(topic, 0, 0, 5)  # a row exists: no longer 0
        assert not batch.claim_input_offset(topic, 0, 99, 250)  # another owner moved it
        assert batch.claim_input_offset(topic, 0, 100, 250)
    with store.reopen().batch() as batch:
        assert batch.select_input_offset(topic, 0) == 250
        assert batch.select_input_offset(topic, 1) == 7
        assert batch.select_input_offset("other.topic", 0) is None


def test_outbox_keeps_commit_order_per_partition(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        for i in range(5):
            batch.append_outbox(0, "!a:example.org", i + 1, b"a%d" % i)
            batch.append_outbox(1, "!b:example.org", i + 1, b"b%d" % i)
        assert batch.select_outbox(0, 10) == []  # buffered until the commit
    with store.store.batch() as batch:
        batch.append_outbox(0, "!a:example.org", 6, b"\x00" * 2_000_000)
    with store.reopen().batch() as batch:
        records = batch.select_outbox(0, 10)
        assert [r.payload[:2] for r in records[:5]] == [b"a0", b"a1", b"a2", b"a3", b"a4"]
        assert [r.stream_position for r in records] == [1, 2, 3, 4, 5, 6]
        assert len(records[5].payload) == 2_000_000
        seqs = [r.seq for r in records]
        assert seqs == sorted(seqs) and len(set(seqs)) == 6
        assert {r.room_id for r in records} == {"!a:example.org"}
        assert [r.payload for r in batch.select_outbox(1, 2)] == [b"b0", b"b1"]
        batch.delete_outbox(0, seqs[2])
    with store.store.batch() as batch:
        assert [r.seq for r in batch.select_outbox(0, 10)] == seqs[3:]
        batch.delete_outbox(0, seqs[-1])
        assert batch.select_outbox(0, 10) == []
        assert len(batch.select_outbox(1, 10)) == 5
