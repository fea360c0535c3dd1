"""A batch held up by a session that stopped moving (a frozen previous owner of the
partition) ends that session after the configured wait, then goes on."""

from __future__ import annotations

import psycopg
import pytest

from processor.storage.postgres import PostgresStore


def test_a_batch_blocked_by_a_stalled_session_ends_it(database_url: str) -> None:
    store = PostgresStore(database_url, stale_lock_seconds=0.5)
    stalled = psycopg.connect(database_url)
    try:
        store.migrate()
        with store.batch() as batch:
            assert batch.claim_input_offset("input", 0, 0, 10)
        # The old owner's last batch: it claimed the offset row, then stopped moving.
        stalled.execute(
            "UPDATE input_offsets SET next_offset = 20 WHERE topic = 'input' AND partition = 0"
        )
        with store.batch() as batch:
            # Waits on the stalled session's row lock until that session is ended.
            assert batch.claim_input_offset("input", 0, 10, 30)
        with pytest.raises(psycopg.OperationalError):
            stalled.execute("SELECT 1")
        with store.batch() as batch:
            assert batch.select_input_offset("input", 0) == 30
    finally:
        stalled.close()
        store.close()


def test_a_batch_that_waits_on_nobody_is_left_alone(database_url: str) -> None:
    store = PostgresStore(database_url, stale_lock_seconds=0.2)
    bystander = psycopg.connect(database_url)
    try:
        store.migrate()
        bystander.execute("SELECT 1")  # an open transaction holding no lock we need
        with store.batch() as batch:
            assert batch.claim_input_offset("input", 0, 0, 10)
            # Long enough for the watch to look at this batch a few times.
            batch.select_input_offset("input", 0)
            batch._execute("SELECT pg_sleep(0.6)")
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    finally:
        bystander.close()
        store.close()
