"""`roomserver query` on an SQLite file (the embedded mode) answers exactly what `roomserver
serve` answers over HTTP on the same file: the same bytes for each request, and a 404 is
status 4 with the error on one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from processor.query.database import QueryDatabase
from processor.query.engine import QueryEngine
from processor.query.http import build_app
from processor.storage import open_store
from tests.integration.pipeline.rooms import ALICE, BOB, DAVE, S2, RoomBuilder, inputs, process


@pytest.fixture(scope="module")
def sqlite_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RoomBuilder]]:
    path = tmp_path_factory.mktemp("cli") / "rooms.db"
    room = RoomBuilder("10")
    events = room.create(ALICE)
    events += [room.member(BOB, BOB, "join"), room.message(BOB), room.member(ALICE, DAVE, "invite")]
    events += [room.message(ALICE, f"m{i}") for i in range(5)]
    store = open_store(str(path))
    try:
        process(store, inputs(events))
    finally:
        store.close()
    yield path, room


def _cli(path: Path, command: str, request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", "query", command, json.dumps(request),
         "--database", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_query_command_answers_as_http(sqlite_room: tuple[Path, RoomBuilder]) -> None:
    path, room = sqlite_room
    last = list(room.pdus)[-1]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("latest_events_and_state", {"room_id": room.room_id, "include_pdus": True}),
        ("events", {"event_ids": list(room.pdus)[:4]}),
        ("memberships_for_room", {"room_id": room.room_id, "joined_only": False}),
        ("invites_for_user", {"user_id": DAVE}),
        ("state_and_auth_chain", {"room_id": room.room_id, "event_id": last, "ids_only": True}),
        ("missing_events", {"room_id": room.room_id, "latest_events": [last],
                            "server_name": S2, "limit": 3}),
        ("room_version", {"room_id": room.room_id}),
    ]
    db = QueryDatabase(str(path), read_only=True)
    app: Any = build_app(QueryEngine(db))
    try:
        with TestClient(app=app) as http:
            for name, request in requests:
                response = http.post(f"/query/{name}", json=request)
                assert response.status_code == 200, response.text
                done = _cli(path, name, request)
                assert done.returncode == 0, done.stderr
                assert done.stdout == response.text + "\n", name
                assert json.loads(done.stdout) == response.json()
            # Not found: 404 over HTTP, status 4 and one line from the command.
            missing = {"room_id": "!nope:x"}
            response = http.post("/query/room_version", json=missing)
            assert response.status_code == 404
            done = _cli(path, "room_version", missing)
            assert done.returncode == 4 and done.stdout == ""
            assert done.stderr.count("\n") == 1 and response.json()["error"] in done.stderr
    finally:
        db.close()
