"""Ending the sessions that hold a batch up for too long: a previous owner frozen mid-batch.

When the consumer group moves a partition, the new owner's batch touches the rows the old
owner's last batch was writing (its input offset, its rooms). If the old owner is frozen (a
SIGSTOP, a paused VM, a long GC pause) in the middle of a statement, its session counts as
*active*, so `idle_in_transaction_session_timeout` never ends it, and its transaction keeps
those rows locked: the new owner would wait forever. A batch that has waited this long on
other sessions' locks ends them (`pg_terminate_backend`): their transactions roll back,
and the input-offset claim already guarantees that a batch of a partition's old owner can
never commit over the new owner's work (`Batch.claim_input_offset`), so nothing is
lost either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

log = logging.getLogger(__name__)

#: How long a batch may wait on another session's locks before that session is ended. A
#: live batch holds its locks for well under a second.
DEFAULT_STALE_LOCK_SECONDS = 10.0


class StaleLockBreaker:
    """Watches the sessions of running batches; ends what has blocked one for too long."""

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        after_seconds: float = DEFAULT_STALE_LOCK_SECONDS,
    ) -> None:
        self._connection = connection
        self._after = after_seconds
        self._lock = threading.Lock()
        #: backend PID of a running batch -> when it began (monotonic)
        self._running: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, backend_pid: int) -> None:
        with self._lock:
            self._running[backend_pid] = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="roomserver-lock-watch", daemon=True
                )
                self._thread.start()

    def end(self, backend_pid: int) -> None:
        with self._lock:
            self._running.pop(backend_pid, None)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()

    def _watch(self) -> None:
        interval = min(1.0, self._after / 2)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._lock:
                waiting = [pid for pid, began in self._running.items() if now - began > self._after]
            if waiting:
                self._end_blockers(waiting)

    def _end_blockers(self, waiting: list[int]) -> None:
        try:
            with self._connection() as conn:
                ended = conn.execute(
                    "SELECT w, b, pg_terminate_backend(b)"
                    " FROM unnest(%s::int[]) AS w, unnest(pg_blocking_pids(w)) AS b",
                    (waiting,),
                ).fetchall()
        except psycopg.Error as e:
            log.warning("could not look for sessions blocking batches: %s", e)
            return
        for waiter, blocker, done in ended:
            log.warning(
                "batch session %d waited over %.0f s on session %d (a frozen previous owner?):"
                " %s",
                waiter, self._after, blocker, "ended it" if done else "could not end it",
            )


__all__ = ["DEFAULT_STALE_LOCK_SECONDS", "StaleLockBreaker"]
