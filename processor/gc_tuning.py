"""Garbage-collector settings for the long-running commands (`run`, `rebuild`, `ingest`).

The caches hold hundreds of thousands of long-lived objects (decoded events, state maps),
and CPython's default thresholds (700, 10, 10) make the collector walk them over and over:
measured at about a fifth of ingest's CPU time. Our data is acyclic, so collections find
little; they are made rarer, not disabled, so that the odd reference cycle (an exception
and its traceback, say) is still freed.
"""

from __future__ import annotations

import gc

#: Allocations between young collections, then young collections per middle one and middle
#: ones per full one (CPython also skips a full one until a quarter of the heap is new).
THRESHOLDS = (100_000, 20, 10)


def tune_for_throughput() -> None:
    gc.set_threshold(*THRESHOLDS)


__all__ = ["THRESHOLDS", "tune_for_throughput"]
