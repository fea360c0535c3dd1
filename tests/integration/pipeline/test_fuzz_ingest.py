"""Mutation fuzzing of `ingest`: a few hundred cases, each one hostile line among
valid traffic (see `tests.integration.pipeline.fuzz` for the mutations and properties). The
longer run is `tests/benchmarks/fuzz_ingest.py`."""

from __future__ import annotations

from pathlib import Path

from tests.integration.pipeline.fuzz import Fuzzer

CASES = 300


def test_no_mutated_line_costs_a_valid_one_or_changes_what_was_stored(tmp_path: Path) -> None:
    fuzzer = Fuzzer(tmp_path)
    ran = 0
    failures = []
    for _, _, failure in fuzzer.cases(CASES, seed=14):
        ran += 1
        if failure is not None:
            failures.append(failure)
    assert ran == CASES
    assert failures == []
