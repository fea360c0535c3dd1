"""The `serve` and `query` commands: the query API over HTTP (uvicorn), and the same answers
from the command line (the embedded mode's SQLite file, or PostgreSQL)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, Any

from processor.config import Settings
from processor.errors import ConfigError
from processor.query.database import QueryDatabase
from processor.query.engine import QueryEngine
from processor.query.errors import QueryError
from schemas import query as q

log = logging.getLogger(__name__)

__all__ = ["app_from_environment", "command_names", "run_query", "serve"]

#: How `serve` hands its settings to uvicorn's worker processes (each builds its own app).
_WORKER_SETTINGS = "ROOMSERVER_SERVE_WORKER_SETTINGS"


def command_names() -> dict[str, str]:
    """`roomserver query` subcommand -> endpoint name (`alias/set` is `alias_set`)."""
    return {name.replace("/", "_"): name for name in q.ENDPOINTS}


def run_query(
    database: str, name: str, body: bytes, out: IO[str], *, read_only: bool = True
) -> int:
    """Answer one query from the command line: the same decoding, transaction and encoding
    as `serve`'s handlers (`QueryEngine.answer`). An error answer is one line on stderr,
    status 1 (4 for a 404, so scripts can tell "not found" from a failure)."""
    db = QueryDatabase(database, read_only=read_only)
    try:
        if not read_only:
            db.migrate()
        engine = QueryEngine(db)
        try:
            answer = engine.answer(name, body)
        except QueryError as e:
            print(f"roomserver query {name}: {e.errcode}: {e.message}", file=sys.stderr)
            return 4 if e.status == 404 else 1
        out.write(answer.decode() + "\n")
        return 0
    finally:
        db.close()


def _build(settings: dict[str, Any]) -> Any:
    from processor.gc_tuning import tune_for_throughput
    from processor.query.http import build_app

    # The query caches hold hundreds of thousands of long-lived objects (skeletons, states):
    # the default collector thresholds walk them over and over, which shows in the p99.
    tune_for_throughput()

    db = QueryDatabase(
        settings["database_url"],
        read_only=bool(settings["query_read_only"]),
        max_connections=settings["query_max_connections"],
    )
    return build_app(QueryEngine(db))


def app_from_environment() -> Any:
    """uvicorn's factory in each worker process (``--workers`` > 1)."""
    return _build(json.loads(os.environ[_WORKER_SETTINGS]))


def serve(settings: Settings) -> int:
    import uvicorn

    if not settings.database_url:
        raise ConfigError("DATABASE_URL is not set (or pass --database-url)")
    if settings.query_workers < 1:
        raise ConfigError("setting query_workers: must be at least 1")
    chosen = {
        "database_url": settings.database_url,
        "query_read_only": settings.query_read_only,
        "query_max_connections": settings.query_max_connections,
    }
    # Checks the database (one line when it cannot be reached) and migrates it once, here,
    # before any worker starts.
    db = QueryDatabase(settings.database_url, read_only=bool(settings.query_read_only))
    try:
        db.migrate()
    finally:
        db.close()
    log.info(
        "serving the query API on http://%s:%d (%d worker%s)",
        settings.query_host, settings.query_port, settings.query_workers,
        "" if settings.query_workers == 1 else "s",
    )
    common: dict[str, Any] = {
        "host": settings.query_host,
        "port": settings.query_port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
    }
    if settings.query_workers == 1:
        uvicorn.run(_build(chosen), **common)
    else:
        os.environ[_WORKER_SETTINGS] = json.dumps(chosen)
        uvicorn.run(
            "processor.query.commands:app_from_environment",
            factory=True,
            workers=settings.query_workers,
            **common,
        )
    return 0
