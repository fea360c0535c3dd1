"""The PostgreSQL plumbing the storage layer relies on, proved on a real PostgreSQL 15.

State blocks and snapshots are written in bulk with binary COPY (docs/architecture.md §4):
`int8[]` columns
(lists of NIDs) and `bytea` columns (content hashes) must round-trip exactly, including the
edges — empty arrays, NULLs, the int8 extremes, zero bytes, and megabyte values.
"""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration

INT8_MIN = -(2**63)
INT8_MAX = 2**63 - 1

ROWS: list[tuple[int, list[int] | None, bytes | None]] = [
    (1, [1, 2, 3], b"\x00\x01\x02\xff"),
    (2, [], b""),
    (3, None, None),
    (4, [INT8_MIN, -1, 0, INT8_MAX], bytes(range(256))),
    (5, list(range(10_000)), b"\x00" * (1024 * 1024)),
]


async def test_binary_copy_round_trips_int8_arrays_and_bytea(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "CREATE TABLE state_block (block_nid int8 PRIMARY KEY, event_nids int8[],"
            " hash bytea)"
        )
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY state_block (block_nid, event_nids, hash) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8[]", "bytea"])
                for row in ROWS:
                    await copy.write_row(row)
            await conn.commit()

            # Read back through binary COPY too: that is how bulk loads leave the database.
            copied: list[tuple[object, ...]] = []
            async with cur.copy(
                "COPY (SELECT block_nid, event_nids, hash FROM state_block ORDER BY block_nid)"
                " TO STDOUT (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8[]", "bytea"])
                async for row in copy.rows():
                    copied.append(row)

            # And through an ordinary query, so the data is what the server stored, not only
            # what COPY hands back.
            await cur.execute(
                "SELECT block_nid, event_nids, hash, cardinality(event_nids), length(hash)"
                " FROM state_block ORDER BY block_nid"
            )
            selected = await cur.fetchall()

    assert copied == ROWS
    assert [(nid, nids, h) for nid, nids, h, _, _ in selected] == ROWS
    # Empty arrays stay empty (not NULL), NULLs stay NULL.
    assert [(n, length) for _, _, _, n, length in selected] == [
        (3, 4), (0, 0), (None, None), (4, 256), (10_000, 1024 * 1024)
    ]


async def test_each_test_gets_its_own_empty_database(database_url: str, postgres_url: str) -> None:
    assert database_url != postgres_url
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT current_database(), count(*) FROM pg_tables"
                                 " WHERE schemaname = 'public' GROUP BY 1")
        assert await cur.fetchall() == []
        cur = await conn.execute("SELECT current_database()")
        row = await cur.fetchone()
    assert row is not None
    assert database_url.endswith("/" + row[0])
