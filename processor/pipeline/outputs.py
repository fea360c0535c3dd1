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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from processor.core.nids import EventNID, StateKeyTuple
from schemas.dead_letter import DeadLetterReason

if TYPE_CHECKING:
    from processor.pipeline.caches import LoadedEvent, RoomState
    from processor.pipeline.handler import BatchResult, InputMessage
    from processor.storage.base import Batch
    from schemas.input import InputRoomEvent

_encode = msgspec.json.Encoder().encode
#: Room for the envelope of each part (field names, the event of part 1 is counted apart).
_ENVELOPE_BYTES = 2048


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

    def _emit(self, room_id: str, stream_position: int, kind: str, message: dict[str, Any],
              topic: str = "output") -> None:
        payload = _encode(message)
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
        room: RoomState,
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
        adds = [event_ids[nid] for nid in added.values()]
        removes = [event_ids[nid] for nid in removed.values()]
        position = room.next_stream_position()
        message: dict[str, Any] = {
            "type": "new_room_event",
            "room_id": room.record.room_id,
            "stream_position": position,
            "event": msgspec.Raw(event.json),
            "room_version": room.version.id,
            "latest_event_ids": [event_ids[nid] for nid in latest],
            "adds_state_event_ids": adds,
            "removes_state_event_ids": removes,
            "last_sent_event_id": last_sent_event_id,
            "rewrites_state": rewrites_state,
            "history_visibility": history_visibility,
            "send_as_server": item.send_as_server,
            "transaction_id": item.transaction_id,
            "part": 1,
            "parts": 1,
        }
        ids_bytes = sum(len(i) + 3 for i in adds) + sum(len(i) + 3 for i in removes)
        if len(event.json) + ids_bytes + _ENVELOPE_BYTES <= self._max:
            self._emit(room.record.room_id, position, "new_room_event", message)
            return
        # Split the delta into parts that each fit (see the module docstring).
        budget = max(1024, self._max - _ENVELOPE_BYTES - len(event.json))
        chunks = _chunks(removes, adds, budget)
        for number, (chunk_removes, chunk_adds) in enumerate(chunks, start=1):
            part = dict(message)
            part["part"] = number
            part["parts"] = len(chunks)
            part["adds_state_event_ids"] = chunk_adds
            part["removes_state_event_ids"] = chunk_removes
            if number > 1:
                part["event"] = None
            self._emit(room.record.room_id, position, "new_room_event", part)

    def old_room_event(self, room: RoomState, event: LoadedEvent, history_visibility: str) -> None:
        position = room.next_stream_position()
        self._emit(room.record.room_id, position, "old_room_event", {
            "type": "old_room_event",
            "room_id": room.record.room_id,
            "stream_position": position,
            "event": msgspec.Raw(event.json),
            "room_version": room.version.id,
            "history_visibility": history_visibility,
        })

    def new_invite_event(self, room: RoomState, event: LoadedEvent, target: str) -> None:
        position = room.next_stream_position()
        self._emit(room.record.room_id, position, "new_invite_event", {
            "type": "new_invite_event",
            "room_id": room.record.room_id,
            "stream_position": position,
            "event": msgspec.Raw(event.json),
            "room_version": room.version.id,
            "target_user_id": target,
        })

    def retire_invite_event(
        self, room: RoomState, invite: LoadedEvent, retired_by: LoadedEvent, target: str
    ) -> None:
        position = room.next_stream_position()
        self._emit(room.record.room_id, position, "retire_invite_event", {
            "type": "retire_invite_event",
            "room_id": room.record.room_id,
            "stream_position": position,
            "event_id": invite.event_id,
            "target_user_id": target,
            "retired_by_event_id": retired_by.event_id,
            "membership": retired_by.event.membership,
        })

    def redacted_event(self, room: RoomState, redacted_event_id: str, because: LoadedEvent) -> None:
        position = room.next_stream_position()
        self._emit(room.record.room_id, position, "redacted_event", {
            "type": "redacted_event",
            "room_id": room.record.room_id,
            "stream_position": position,
            "redacted_event_id": redacted_event_id,
            "redacted_because": msgspec.Raw(because.json),
        })

    def dead_letter(self, message: InputMessage, reason: DeadLetterReason, detail: str) -> None:
        import base64

        self._emit("", 0, "dead_letter", {
            "type": "dead_letter",
            "reason": reason.value,
            "message": detail,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "original": base64.b64encode(message.value).decode("ascii"),
        }, topic="dlq")


def _chunks(
    removes: list[str], adds: list[str], budget: int
) -> list[tuple[list[str], list[str]]]:
    chunks: list[tuple[list[str], list[str]]] = []
    current: tuple[list[str], list[str]] = ([], [])
    used = 0
    for index, ids in enumerate((removes, adds)):
        for event_id in ids:
            size = len(event_id) + 3
            if used + size > budget and (current[0] or current[1]):
                chunks.append(current)
                current = ([], [])
                used = 0
            current[index].append(event_id)
            used += size
    chunks.append(current)
    return chunks
