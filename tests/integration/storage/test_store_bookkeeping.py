"""Storage contract, part 3: memberships, invites, redactions, input offsets and the outbox.

Offsets and outbox rows are the exactly-once machinery (design §6): written in the batch's
transaction, they commit or vanish together with its effects; the outbox is read back in
commit order per partition and trimmed once relayed.
"""

from __future__ import annotations

from processor.core.nids import EventNID, StateKeyNID
from tests.integration.storage.conftest import StoreUnderTest
from tests.integration.storage.helpers import add_event, add_room


def test_memberships(store: StoreUnderTest) -> None:
    alice, bob = StateKeyNID(2001), StateKeyNID(2002)
    with store.store.batch() as batch:
        room = add_room(batch)
        other = add_room(batch, "!other:example.org")
        batch.set_membership(room.room_nid, alice, "join", EventNID(10))
        batch.set_membership(room.room_nid, bob, "invite", EventNID(11))
        batch.set_membership(other.room_nid, alice, "ban", EventNID(12))
        # Visible in the batch that wrote it, last write wins.
        batch.set_membership(room.room_nid, bob, "join", EventNID(13))
        seen = batch.select_memberships(room.room_nid)
        assert {t: (m.membership, m.event_nid) for t, m in seen.items()} == {
            alice: ("join", 10),
            bob: ("join", 13),
        }
    with store.store.batch() as batch:
        batch.set_membership(room.room_nid, alice, "leave", EventNID(14))
    with store.reopen().batch() as batch:
        found = batch.select_memberships(room.room_nid)
        assert {t: (m.membership, m.event_nid) for t, m in found.items()} == {
            alice: ("leave", 14),
            bob: ("join", 13),
        }
        only_bob = batch.select_memberships(room.room_nid, [bob])
        assert list(only_bob) == [bob]
        assert batch.select_memberships(other.room_nid)[alice].membership == "ban"


def test_invites_are_retired_once(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        room = add_room(batch)
        other = add_room(batch, "!other:example.org")
        batch.insert_invite(room.room_nid, "@bob:example.org", EventNID(20))
        batch.insert_invite(room.room_nid, "@bob:example.org", EventNID(21))
        batch.insert_invite(other.room_nid, "@bob:example.org", EventNID(22))
        batch.insert_invite(room.room_nid, "@carol:example.org", EventNID(23))
    with store.store.batch() as batch:
        active = batch.select_active_invites("@bob:example.org")
        assert [(i.room_nid, i.event_nid) for i in active] == [
            (room.room_nid, 20),
            (room.room_nid, 21),
            (other.room_nid, 22),
        ]
        assert batch.retire_invites(room.room_nid, "@bob:example.org") == [20, 21]
        assert batch.retire_invites(room.room_nid, "@bob:example.org") == []
    with store.reopen().batch() as batch:
        assert [i.event_nid for i in batch.select_active_invites("@bob:example.org")] == [22]
        assert [i.event_nid for i in batch.select_active_invites("@carol:example.org")] == [23]


def test_pending_redactions(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        batch.insert_redaction(EventNID(30), "$target", False)
        batch.insert_redaction(EventNID(31), "$target", False)
        batch.insert_redaction(EventNID(32), "$elsewhere", True)
    with store.store.batch() as batch:
        pending = batch.select_pending_redactions(["$target", "$elsewhere", "$none"])
        assert list(pending) == ["$target"]
        assert [r.redaction_event_nid for r in pending["$target"]] == [30, 31]
        # Re-inserting a redaction once checked updates it (the processor does this).
        batch.insert_redaction(EventNID(30), "$target", True)
        batch.mark_redaction_validated(EventNID(31))
    with store.reopen().batch() as batch:
        assert batch.select_pending_redactions(["$target"]) == {}
        # A redaction written in this batch counts, and validating it before the batch
        # writes it sticks.
        batch.insert_redaction(EventNID(33), "$later", False)
        batch.insert_redaction(EventNID(34), "$later", False)
        batch.mark_redaction_validated(EventNID(34))
        assert [r.redaction_event_nid for r in batch.select_pending_redactions(["$later"])[
            "$later"]] == [33]
    with store.reopen().batch() as batch:
        assert [r.redaction_event_nid for r in batch.select_pending_redactions(["$later"])[
            "$later"]] == [33]


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


def test_input_offsets(store: StoreUnderTest) -> None:
    with store.store.batch() as batch:
        assert batch.select_input_offset("roomserver.input", 0) is None
        batch.set_input_offset("roomserver.input", 0, 100)
        batch.set_input_offset("roomserver.input", 1, 7)
        assert batch.select_input_offset("roomserver.input", 0) == 100
    with store.store.batch() as batch:
        batch.set_input_offset("roomserver.input", 0, 250)
    with store.reopen().batch() as batch:
        assert batch.select_input_offset("roomserver.input", 0) == 250
        assert batch.select_input_offset("roomserver.input", 1) == 7
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
