"""The values that flow through the pipeline, shared by its steps (a leaf: it imports no other
pipeline module).

    InputMessage ─ decode ─▶ Decoded ─ steps ─▶ LoadedEvent (stored) ─▶ outputs
                      └────▶ DeadLetterError ─▶ DeadLetteredInput

`StateAt` is a state map with the snapshot that stores it; `BatchResult` is what one batch
did, for the caller's summary and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from processor.core.decision import Outcome
from processor.matrix.events import Event
from processor.matrix.room_versions import RoomVersion
from processor.nids import EventNID, RoomNID, StateKeyTuple, StateSnapshotNID
from schemas.dead_letter import DeadLetterReason
from schemas.input import InputRoomEvent

__all__ = [
    "NO_SNAPSHOT",
    "BatchResult",
    "DeadLetterError",
    "DeadLetteredInput",
    "Decoded",
    "InputMessage",
    "LoadedEvent",
    "StateAt",
]

#: The snapshot NID of a state not stored yet, and of an outlier's (unknown) state.
NO_SNAPSHOT = StateSnapshotNID(0)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class InputMessage:
    """One input record: its bytes and where it came from (for dead letters)."""

    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class Decoded:
    """An input message after step 1 (decode): the input, its event, the room version."""

    item: InputRoomEvent
    event: Event
    version: RoomVersion


class DeadLetterError(Exception):
    """An input the pipeline cannot process: it goes to the dead-letter topic with `reason`
    and `detail`, and the rest of the batch goes on. Internal to the pipeline (never raised
    out of `InputHandler.handle_batch`)."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class DeadLetteredInput:
    """An input message that was dead-lettered, and why."""

    message: InputMessage
    reason: DeadLetterReason
    detail: str


@dataclass(slots=True)
class BatchResult:
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    dead_letters: list[DeadLetteredInput] = field(default_factory=list)
    state_resolutions: int = 0
    state_resolution_seconds: float = 0.0
    outputs: int = 0
    #: Event ID -> outcome (only when the handler records outcomes).
    event_outcomes: dict[str, Outcome] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2x, per event
class LoadedEvent:
    """A stored event with its decoded form."""

    nid: EventNID
    event_id: str
    room_nid: RoomNID
    key: StateKeyTuple | None
    rejected: bool
    outlier: bool
    redacted: bool
    state_snapshot_nid: StateSnapshotNID
    auth_nids: tuple[EventNID, ...]
    prev_nids: tuple[EventNID, ...]
    event: Event
    #: The event as served: the bytes received, or the redacted form once redacted.
    json: bytes


class StateAt:
    """A state map, and the snapshot that stores it once it is stored (0 until then).

    When the state is another state (`base`) plus a few changes, `base` and `changes` are
    kept so that storing it writes a small delta instead of comparing the full state.
    """

    __slots__ = ("base", "changes", "entries", "snapshot_nid")

    def __init__(
        self,
        entries: Mapping[StateKeyTuple, EventNID],
        snapshot_nid: StateSnapshotNID = NO_SNAPSHOT,
        base: StateAt | None = None,
        changes: Mapping[StateKeyTuple, EventNID] | None = None,
    ) -> None:
        self.entries = entries
        self.snapshot_nid = snapshot_nid
        self.base = base
        self.changes = changes
