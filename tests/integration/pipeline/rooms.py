"""Hand-built rooms for the input handler's tests, and a runner for the embedded mode.

`RoomBuilder` makes signed, hashed PDUs of one room version with `PduFactory` (the same
finishing the generator uses) and picks `auth_events` as the server-server API's "Auth events
selection" says. It tracks the state the room *should* have (what the test author meant), so
tests can compare the roomserver's answers to an independent expectation.

`process` runs inputs through `processor.ingest.ingest` (the same handler as `run`) against a
store, and decodes the outputs. The `store` fixture gives a fresh store, SQLite or
PostgreSQL (the PostgreSQL variant is marked `integration` and needs the `database_url`
fixture's server).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from processor.generate.keys import ServerKey, make_servers
from processor.generate.pdus import PduFactory
from processor.ingest import IngestSummary, ingest, read_lines
from processor.matrix.room_versions import RoomVersion, room_version
from processor.room_state import room_state_lines
from processor.storage import open_store
from processor.storage.base import EventRecord, Store
from schemas.codecs import decode_output
from schemas.output import OutputEvent

SERVERS: list[ServerKey] = make_servers(random.Random("pipeline tests"), 3)
S1, S2, S3 = (s.server_name for s in SERVERS)
ALICE = f"@alice:{S1}"
BOB = f"@bob:{S2}"
CAROL = f"@carol:{S2}"
DAVE = f"@dave:{S3}"

ALL_VERSIONS = [str(n) for n in range(1, 13)]

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Built:
    event_id: str
    pdu: dict[str, Any]


class RoomBuilder:
    """Builds the events of one room. `state` is the intended current state,
    (type, state_key) -> event ID, updated by every event built with `accept=True`."""

    _rooms = 0

    def __init__(self, version_id: str = "10") -> None:
        RoomBuilder._rooms += 1
        self.version: RoomVersion = room_version(version_id)
        self.factory = PduFactory(self.version)
        self._index = RoomBuilder._rooms
        self.room_id = "" if self.version.room_id_is_create_event_hash else (
            f"!room{self._index}:{S1}"
        )
        self.state: dict[tuple[str, str], str] = {}
        self.tips: list[str] = []
        self.depths: dict[str, int] = {}
        self.pdus: dict[str, dict[str, Any]] = {}
        self._count = 0
        self._ts = 1_700_000_000_000

    # ------------------------------------------------------------ events

    def auth_for(
        self, sender: str, event_type: str, state_key: str | None, content: Mapping[str, Any]
    ) -> list[str]:
        """Auth events selection (server-server API) against the intended state."""
        if event_type == "m.room.create":
            return []
        keys: list[tuple[str, str]] = []
        if not self.version.create_event_implicit_in_auth_events:
            keys.append(("m.room.create", ""))
        keys += [("m.room.power_levels", ""), ("m.room.member", sender)]
        if event_type == "m.room.member" and state_key is not None:
            keys.append(("m.room.member", state_key))
            if content.get("membership") in ("join", "invite", "knock"):
                keys.append(("m.room.join_rules", ""))
        seen: list[str] = []
        for key in keys:
            event_id = self.state.get(key)
            if event_id is not None and event_id not in seen:
                seen.append(event_id)
        return seen

    def event(
        self,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev: Sequence[str] | None = None,
        auth: Sequence[str] | None = None,
        redacts: str | None = None,
        accept: bool = True,
        sign: bool = True,
    ) -> Built:
        """A finished PDU. `accept=False`: the test expects it not to change the room (a
        rejection or a soft failure), so the intended state and tips stay as they were.
        `sign=False` leaves `signatures` empty: the roomserver does not verify them (the
        federation API does), and signing dominates building tens of thousands of events."""
        prev_ids = list(self.tips if prev is None else prev)
        auth_ids = list(
            self.auth_for(sender, event_type, state_key, content) if auth is None else auth
        )
        depth = max((self.depths.get(p, 0) for p in prev_ids), default=0) + 1
        self._count += 1
        self._ts += 1000
        origin = sender.partition(":")[2]
        signer = next((s for s in SERVERS if s.server_name == origin), SERVERS[0])
        is_v12_create = event_type == "m.room.create" and self.version.room_id_is_create_event_hash
        pdu, event_id = self.factory.build(
            room_id=None if is_v12_create else self.room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_event_ids=prev_ids,
            auth_event_ids=auth_ids,
            depth=depth,
            origin_server_ts=self._ts,
            signers=[signer] if sign else [],
            opaque_event_id=f"$r{self._index}e{self._count}:{origin}",
            redacts=redacts,
        )
        if is_v12_create:
            self.room_id = self.factory.room_id_of_create(pdu)
        self.depths[event_id] = depth
        self.pdus[event_id] = pdu
        if accept:
            self.tips = [event_id]
            if state_key is not None:
                self.state[(event_type, state_key)] = event_id
        return Built(event_id, pdu)

    def member(self, sender: str, target: str, membership: str, **kw: Any) -> Built:
        return self.event(sender, "m.room.member", {"membership": membership}, target, **kw)

    def message(self, sender: str, body: str = "hello", **kw: Any) -> Built:
        return self.event(sender, "m.room.message", {"msgtype": "m.text", "body": body}, **kw)

    def create(
        self, creator: str = ALICE, *, join_rule: str = "public", users: Mapping[str, int] | None
        = None, redact: int = 50,
    ) -> list[Built]:
        """The usual opening: create, creator joins, power levels, join rules."""
        content: dict[str, Any] = {"room_version": self.version.id}
        if not self.version.implicit_room_creator:
            content["creator"] = creator
        events = [self.event(creator, "m.room.create", content, "")]
        events.append(self.member(creator, creator, "join"))
        levels: dict[str, Any] = {"users": dict(users or {}), "redact": redact}
        if not self.version.privileged_creators:
            levels["users"].setdefault(creator, 100)
        events.append(self.event(creator, "m.room.power_levels", levels, ""))
        events.append(self.event(creator, "m.room.join_rules", {"join_rule": join_rule}, ""))
        return events

    def redaction(self, sender: str, target: str, **kw: Any) -> Built:
        return self.event(sender, "m.room.redaction", {"reason": "test"}, redacts=target, **kw)


def as_input(
    built: Built | dict[str, Any],
    kind: str = "new",
    *,
    room_version: str | None = None,
    has_state: bool = False,
    state_event_ids: Sequence[str] = (),
) -> dict[str, Any]:
    pdu = built.pdu if isinstance(built, Built) else built
    item: dict[str, Any] = {"kind": kind, "event": pdu}
    if room_version is not None:
        item["room_version"] = room_version
    if has_state:
        item["has_state"] = True
        item["state_event_ids"] = list(state_event_ids)
    return item


def inputs(events: Iterable[Built], kind: str = "new") -> list[dict[str, Any]]:
    return [as_input(b, kind) for b in events]


# ---------------------------------------------------------------- running


@dataclass
class Processed:
    summary: IngestSummary
    #: Each output line, as written.
    lines: list[bytes] = field(default_factory=list)

    @property
    def outputs(self) -> list[OutputEvent]:
        return [decode_output(line) for line in self.lines]

    def outcome(self, built: Built) -> str | None:
        found = self.summary.event_outcomes.get(built.event_id)
        return None if found is None else found.value


def encode_lines(items: Iterable[dict[str, Any] | bytes]) -> bytes:
    return b"".join((i if isinstance(i, bytes) else _encode(i)) + b"\n" for i in items)


def process(
    store: Store,
    items: Iterable[dict[str, Any] | bytes],
    *,
    server_name: str = "",
    batch_size: int = 1000,
) -> Processed:
    """Ingest `items` (input dicts, or raw lines) and return the summary and outputs."""
    out = io.BytesIO()
    summary = ingest(
        store,
        read_lines(io.BytesIO(encode_lines(items))),
        output=out,
        server_name=server_name,
        batch_size=batch_size,
        record_outcomes=True,
    )
    return Processed(summary, out.getvalue().splitlines())


def event_record(store: Store, event_id: str) -> EventRecord | None:
    with store.batch() as batch:
        return batch.select_events_by_id([event_id]).get(event_id)


# ---------------------------------------------------------------- the store fixture


@dataclass(frozen=True)
class StoreAt:
    store: Store
    url: str


def _open(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("database_url"))
    return str(tmp_path / "rs.db")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreAt]:
    """A fresh, migrated store on each backend, and its URL (for the CLI)."""
    url = _open(request, tmp_path)
    store = open_store(url)
    store.migrate()
    try:
        yield StoreAt(store, url)
    finally:
        store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StoreAt]:
    """A fresh SQLite store only (where PostgreSQL would add nothing)."""
    url = str(tmp_path / "rs.db")
    store = open_store(url)
    store.migrate()
    try:
        yield StoreAt(store, url)
    finally:
        store.close()


# ---------------------------------------------------------------- reading the store


def state_of(
    store: Store, room_id: str, at: str | None = None, *, before: bool = False
) -> dict[tuple[str, str], str]:
    """The room's state (now, or after/before `at`) as the `state` command serves it."""
    [line] = list(room_state_lines(store, room_id, at=at, before=before, all_events=False))
    return {(t, k): e for t, k, e in line["state"]}


def extremities(store: Store, room_id: str) -> set[str]:
    """The room's forward extremities, as event IDs."""
    with store.batch() as batch:
        room = batch.select_room(room_id)
        assert room is not None, room_id
        records = batch.select_events(room.forward_extremities)
        return {records[nid].event_id for nid in room.forward_extremities}
