"""Output events: built from what the handler decided, encoded once, sent to a sink.

The sink is the outbox of the batch's transaction (`run`: relayed to Kafka after commit) or
memory (`ingest`: written to a file after commit). Every output of a room gets the next
`stream_position` of that room.

No output may exceed the output topic's maximum message size. A `new_room_event` whose state
delta does not fit (a state-rewriting join into a big room lists every state event) is split
into `parts` messages with the same `stream_position`: part 1 carries the event and every
other field; each part carries a slice of `adds_state_event_ids` and
`removes_state_event_ids`. A consumer collects parts 1..parts, then applies all removes and
all adds.

Sizes are measured, not estimated: the fixed part of a message (every field but the two ID
lists) is encoded once, each event ID's encoded size is counted, and
`KAFKA_RECORD_OVERHEAD_BYTES` is kept free for what Kafka adds around the value (key,
headers, record and batch framing), which `max.message.bytes` also counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from processor.errors import ConfigError
from processor.nids import EventNID, StateKeyTuple
from processor.pipeline.caches import TrackedRoom
from processor.pipeline.types import BatchResult, InputMessage, LoadedEvent
from processor.storage.base import Batch
from schemas.dead_letter import DeadLetter, DeadLetterReason
from schemas.input import InputRoomEvent
from schemas.output import (
    NewInviteEvent,
    NewRoomEvent,
    OldRoomEvent,
    RedactedEvent,
    RetireInviteEvent,
)

_encode = msgspec.json.Encoder().encode

#: Kept free below the topic's max.message.bytes for the record around the value: the key
#: (a room ID, at most 255 bytes), the `room_id` and type headers, and the record batch
#: framing (61 bytes of batch header plus per-record varints).
KAFKA_RECORD_OVERHEAD_BYTES = 1024
#: The largest `part`/`parts` numbers a size is measured with (a split never has more).
_MAX_PARTS = 999_999
_NULL_EVENT = msgspec.Raw(b"null")

Output = NewRoomEvent | OldRoomEvent | NewInviteEvent | RetireInviteEvent | RedactedEvent


class OutputTooLarge(ConfigError):
    """An output that cannot be split to fit: its unsplittable fields alone (the event,
    `latest_event_ids`, `transaction_id`...) exceed the limit. With Kafka's default 1 MB
    only a misconfigured, tiny `max.message.bytes` gets here."""


class OutputBuilder:
    def __init__(
        self,
        partition: int,
        max_message_bytes: int,
        sink: Literal["outbox", "memory"] = "outbox",
    ) -> None:
        self._partition = partition
        self._max = max_message_bytes
        self._sink = sink
        self._batch: Batch | None = None
        self._result: BatchResult | None = None
        self._pending: list[bytes] = []
        self.rooms_seen: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    def begin(self, batch: Batch, result: BatchResult) -> None:
        self._batch = batch
        self._result = result

    def take(self) -> list[bytes]:
        """(memory sink) The outputs of the committed batch."""
        pending, self._pending = self._pending, []
        return pending

    def discard(self) -> None:
        self._pending = []

    def _emit(self, output: Output) -> None:
        self._emit_encoded(output.room_id, output.stream_position, _encode(output))

    def _emit_encoded(
        self, room_id: str, stream_position: int, payload: bytes, topic: str = "output"
    ) -> None:
        assert self._batch is not None and self._result is not None
        if topic == "output":
            self._result.outputs += 1
            self.rooms_seen.add(room_id)
        if self._sink == "memory":
            if topic == "output":
                self._pending.append(payload)
            return
        # An empty room ID marks a dead letter for the relay (see outbox_relay).
        self._batch.append_outbox(self._partition, room_id, stream_position, payload)

    # ------------------------------------------------------------ outputs

    def new_room_event(
        self,
        room: TrackedRoom,
        event: LoadedEvent,
        item: InputRoomEvent,
        *,
        latest: Sequence[EventNID],
        added: Mapping[StateKeyTuple, EventNID],
        removed: Mapping[StateKeyTuple, EventNID],
        rewrites_state: bool,
        history_visibility: str,
        event_ids: Mapping[EventNID, str],
        last_sent_event_id: str | None,
    ) -> None:
        # In event ID order: the order of a state delta's keys depends on which input a
        # resolved state was kept against (and so on the caches), and a replay must give the
        # same bytes.
        adds = sorted(event_ids[nid] for nid in added.values())
        removes = sorted(event_ids[nid] for nid in removed.values())
        position = room.next_stream_position()
        message = NewRoomEvent(
            room_id=room.record.room_id,
            stream_position=position,
            event=msgspec.Raw(event.json),
            room_version=room.version.id,
            latest_event_ids=[event_ids[nid] for nid in latest],
            adds_state_event_ids=adds,
            removes_state_event_ids=removes,
            last_sent_event_id=last_sent_event_id,
            rewrites_state=rewrites_state,
            history_visibility=history_visibility,
            send_as_server=item.send_as_server,
            transaction_id=item.transaction_id,
        )
        limit = self._max - KAFKA_RECORD_OVERHEAD_BYTES
        payload = _encode(message)
        if len(payload) <= limit:
            self._emit_encoded(room.record.room_id, position, payload)
            return
        # Each ID as it is encoded in a list ("id",).
        removes_sizes = [len(_encode(i)) + 1 for i in removes]
        adds_sizes = [len(_encode(i)) + 1 for i in adds]
        # Split the delta into parts that each fit (see the module docstring). Sized with
        # the event in every part and the largest part numbers: a bound for every part.
        sizing = msgspec.structs.replace(
            message, adds_state_event_ids=[], removes_state_event_ids=[],
            part=_MAX_PARTS, parts=_MAX_PARTS,
        )
        budget = limit - len(_encode(sizing))
        longest = max(removes_sizes + adds_sizes, default=0)
        if budget < max(longest, 1):
            raise OutputTooLarge(
                f"new_room_event for {event.event_id} in room {room.record.room_id}: "
                f"{limit - budget} bytes without its state delta, over the output limit of "
                f"{limit} bytes (max message bytes {self._max} minus "
                f"{KAFKA_RECORD_OVERHEAD_BYTES} for the record): raise the output topic's "
                "max.message.bytes"
            )
        chunks = _chunks(removes, removes_sizes, adds, adds_sizes, budget)
        for number, (chunk_removes, chunk_adds) in enumerate(chunks, start=1):
            self._emit(msgspec.structs.replace(
                message,
                event=message.event if number == 1 else _NULL_EVENT,
                adds_state_event_ids=chunk_adds,
                removes_state_event_ids=chunk_removes,
                part=number,
                parts=len(chunks),
            ))

    def old_room_event(
        self, room: TrackedRoom, event: LoadedEvent, history_visibility: str
    ) -> None:
        self._emit(OldRoomEvent(
            room_id=room.record.room_id,
            stream_position=room.next_stream_position(),
            event=msgspec.Raw(event.json),
            room_version=room.version.id,
            history_visibility=history_visibility,
        ))

    def new_invite_event(self, room: TrackedRoom, event: LoadedEvent, target: str) -> None:
        self._emit(NewInviteEvent(
            room_id=room.record.room_id,
            stream_position=room.next_stream_position(),
            event=msgspec.Raw(event.json),
            room_version=room.version.id,
            target_user_id=target,
        ))

    def retire_invite_event(
        self, room: TrackedRoom, invite: LoadedEvent, retired_by: LoadedEvent, target: str
    ) -> None:
        membership = retired_by.event.membership
        self._emit(RetireInviteEvent(
            room_id=room.record.room_id,
            stream_position=room.next_stream_position(),
            event_id=invite.event_id,
            target_user_id=target,
            retired_by_event_id=retired_by.event_id,
            membership=membership if isinstance(membership, str) else "",
        ))

    def redacted_event(
        self, room: TrackedRoom, redacted_event_id: str, because: LoadedEvent
    ) -> None:
        self._emit(RedactedEvent(
            room_id=room.record.room_id,
            stream_position=room.next_stream_position(),
            redacted_event_id=redacted_event_id,
            redacted_because=msgspec.Raw(because.json),
        ))

    def dead_letter(self, message: InputMessage, reason: DeadLetterReason, detail: str) -> None:
        record = DeadLetter.of(
            message.value, reason=reason, message=detail, topic=message.topic,
            partition=message.partition, offset=message.offset,
        )
        self._emit_encoded("", 0, _encode(record), topic="dlq")


def _chunks(
    removes: list[str],
    removes_sizes: list[int],
    adds: list[str],
    adds_sizes: list[int],
    budget: int,
) -> list[tuple[list[str], list[str]]]:
    """The removes then the adds, cut into (removes, adds) slices of at most `budget`
    encoded bytes each. Every ID fits a slice on its own (the caller checked)."""
    chunks: list[tuple[list[str], list[str]]] = []
    current: tuple[list[str], list[str]] = ([], [])
    used = 0
    for index, (ids, sizes) in enumerate(((removes, removes_sizes), (adds, adds_sizes))):
        for event_id, size in zip(ids, sizes, strict=True):
            if used + size > budget and (current[0] or current[1]):
                chunks.append(current)
                current = ([], [])
                used = 0
            current[index].append(event_id)
            used += size
    chunks.append(current)
    return chunks
