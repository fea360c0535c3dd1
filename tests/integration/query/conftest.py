"""Fixtures of the query API tests: one PostgreSQL database per module, filled through the
pipeline (the 12 conformance rooms, and hand-built rooms), and an HTTP client of
`roomserver serve`'s application over it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient

from processor.ingest import ingest, read_lines
from processor.query.database import QueryDatabase
from processor.query.engine import QueryEngine
from processor.query.http import build_app
from processor.storage import open_store
from tests.conformance.rooms import ROOMS, Room, rooms_in
from tests.fixtures.postgres import _fresh_database, database_name


@dataclass
class Served:
    url: str
    engine: QueryEngine
    http: TestClient[Any]

    def post(self, path: str, body: object) -> tuple[int, dict[str, Any]]:
        response = self.http.post(path, json=body)
        answer: dict[str, Any] = response.json()
        return response.status_code, answer


@pytest.fixture(scope="module")
def module_database(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    with _fresh_database(postgres_url, database_name(request.module.__name__)) as url:
        yield url


def conformance_rooms() -> list[Room]:
    return rooms_in(ROOMS)


def ingest_conformance(url: str) -> None:
    store = open_store(url)
    try:
        for room in conformance_rooms():
            ingest(store, read_lines(io.BytesIO(room.input.read_bytes())))
    finally:
        store.close()


@pytest.fixture(scope="module")
def served(module_database: str) -> Iterator[Served]:
    db = QueryDatabase(module_database)
    db.migrate()
    engine = QueryEngine(db)
    app: Any = build_app(engine)  # an ASGI callable: Litestar behind the metrics middleware
    with TestClient(app=app) as http:
        yield Served(module_database, engine, http)
    db.close()
