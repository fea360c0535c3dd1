"""Determinism of the embedded mode: the same input gives byte-identical
`roomserver state --all-events` output, after and `--before`, for every room, whatever
Python's hash seed and whatever the batch size.

The input is the twelve conformance rooms (one per room version, heavily forked) interleaved
line by line; the reference is `tests.conformance.dumps.baseline()` (in-process `ingest`
into SQLite with the command's default batch size, under this process's hash seed). The
same comparison against `run` on 1 and 3 partitions and against `rebuild` is in
tests/integration/test_determinism.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processor.pipeline.caches import CacheLimits
from tests.conformance.dumps import (
    baseline,
    baseline_database,
    differences,
    dump,
    ingest_into,
    input_bytes,
    input_lines,
    input_room_ids,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, hash_seed: str | None = None) -> bytes:
    """`roomserver ARGS` as a child process (`python -m processor.cli`); its stdout."""
    env = dict(os.environ)
    if hash_seed is None:
        env.pop("PYTHONHASHSEED", None)
    else:
        env["PYTHONHASHSEED"] = hash_seed
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, timeout=120,
    )
    assert done.returncode == 0, (
        f"roomserver {' '.join(args)} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}"
    )
    return done.stdout


def test_the_baseline_covers_every_event_of_the_twelve_rooms() -> None:
    reference = baseline()
    assert len(input_room_ids()) == 12
    assert set(reference) == {(r, m) for r in input_room_ids() for m in ("after", "before")}
    for mode in ("after", "before"):
        lines = sum(len(reference[r, mode].splitlines()) for r in input_room_ids())
        assert lines == len(input_lines()) == 1800, mode
    # Forked rooms, rejections and all: not a trivial dump.
    assert all(reference[r, "after"] != reference[r, "before"] for r in input_room_ids())


def test_the_dump_is_what_the_state_command_prints() -> None:
    """`dump` reads and encodes as `roomserver state --all-events [--before]` does (two
    rooms, both modes, through the real command line)."""
    database = baseline_database()
    first, last = input_room_ids()[0], input_room_ids()[-1]
    for room_id, flags in ((first, ()), (last, ("--before",))):
        printed = _cli("state", "--database", database, "--room", room_id,
                       "--all-events", *flags)
        assert printed == baseline()[room_id, "before" if flags else "after"], room_id


@pytest.mark.parametrize("hash_seed", ["0", "1", "12345"])
def test_ingest_is_independent_of_the_hash_seed(hash_seed: str, tmp_path: Path) -> None:
    """`roomserver ingest` as a child process with PYTHONHASHSEED set: set and dict
    iteration orders of str keys change with it; the stored state must not."""
    source = tmp_path / "rooms.jsonl"
    source.write_bytes(input_bytes())
    database = tmp_path / "rooms.db"
    summary = _cli("ingest", str(source), "--database", str(database), hash_seed=hash_seed)
    assert b"events:            1800" in summary, summary.decode()
    found = differences(baseline(), dump(str(database)), f"PYTHONHASHSEED={hash_seed}")
    assert not found, found


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_ingest_is_independent_of_the_batch_size(batch_size: int, tmp_path: Path) -> None:
    """Batches of 1 (a transaction per event), 7 (rooms cut mid-fork, every batch mixing
    rooms) and 500, against the baseline's 1000."""
    database = tmp_path / "rooms.db"
    ingest_into(str(database), input_lines(), batch_size=batch_size)
    found = differences(baseline(), dump(str(database)), f"batch size {batch_size}")
    assert not found, found


def test_ingest_is_independent_of_the_cache_limits(tmp_path: Path) -> None:
    """Caches far too small for the twelve rooms: between batches the coldest rooms (their
    auth chain indexes and verdicts) and the name maps are dropped, and events, states and
    indexes are read back from the database as needed. Nothing may change but the speed."""
    database = tmp_path / "rooms.db"
    tiny = CacheLimits(events=8, states=2, auth_index_events=40, names=4)
    ingest_into(str(database), input_lines(), batch_size=7, cache_limits=tiny)
    found = differences(baseline(), dump(str(database)), "tiny cache limits")
    assert not found, found
