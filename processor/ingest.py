"""`roomserver ingest`: the embedded mode. The same input handler as `run`, fed from a
JSON-lines file instead of Kafka, storing into SQLite (or PostgreSQL) and writing outputs to
a JSON-lines file instead of the output topic.

A malformed line is reported with its line number and skipped: it becomes a dead letter,
exactly as in `run`, and the rest of the file is processed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from processor.core.decision import Outcome
from processor.pipeline.caches import CacheLimits
from processor.pipeline.processor import PartitionProcessor
from processor.pipeline.types import BatchResult, InputMessage
from processor.storage.base import Store


@dataclass
class IngestSummary:
    events: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    state_resolutions: int = 0
    outputs: int = 0
    dead_letters: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Event ID -> outcome, when `ingest(record_outcomes=True)`.
    event_outcomes: dict[str, Outcome] = field(default_factory=dict)

    def add(self, result: BatchResult) -> None:
        for outcome, n in result.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.state_resolutions += result.state_resolutions
        self.outputs += result.outputs
        self.event_outcomes.update(result.event_outcomes)
        for dead in result.dead_letters:
            self.dead_letters.append(
                f"line {dead.message.offset}: {dead.reason.value}: {dead.detail}"
            )

    def lines(self) -> list[str]:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        get = self.outcomes.get
        return [
            f"events:            {self.events}",
            f"accepted:          {get(Outcome.ACCEPTED, 0)}",
            f"rejected:          {get(Outcome.REJECTED, 0)}",
            f"soft-failed:       {get(Outcome.SOFT_FAILED, 0)}",
            f"outliers:          {get(Outcome.OUTLIER, 0)}",
            f"duplicates:        {get(Outcome.DUPLICATE, 0)}",
            f"dead-lettered:     {get(Outcome.DEAD_LETTERED, 0)}",
            f"rooms:             {len(self.rooms)}",
            f"state resolutions: {self.state_resolutions}",
            f"outputs:           {self.outputs}",
            f"events/s:          {rate:,.0f}",
        ]


def read_lines(stream: IO[bytes]) -> Iterator[InputMessage]:
    for number, line in enumerate(stream, start=1):
        line = line.strip()
        if line:
            yield InputMessage(line, "file", 0, number)


def batched(messages: Iterable[InputMessage], size: int) -> Iterator[list[InputMessage]]:
    batch: list[InputMessage] = []
    for message in messages:
        batch.append(message)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(
    store: Store,
    messages: Iterable[InputMessage],
    *,
    output: IO[bytes] | None = None,
    server_name: str = "",
    batch_size: int = 1000,
    progress: bool = False,
    total: int | None = None,
    record_outcomes: bool = False,
    cache_limits: CacheLimits | None = None,
) -> IngestSummary:
    """Processes every message; returns the summary. Outputs are written after each batch
    commits, so the output file never holds an output whose effects were rolled back."""
    store.migrate()
    summary = IngestSummary()
    processor = PartitionProcessor(
        server_name, record_outcomes=record_outcomes, cache_limits=cache_limits
    )
    started = time.perf_counter()
    bar = _progress(total) if progress else None
    try:
        for batch_messages in batched(messages, batch_size):
            try:
                with store.batch() as batch:
                    result = processor.process(batch, batch_messages)
            except BaseException:
                processor.rolled_back()
                raise
            summary.events += len(batch_messages)
            summary.add(result)
            summary.rooms.update(processor.rooms_seen)
            pending = processor.take_outputs()
            if output is not None:
                for payload in pending:
                    output.write(payload)
                    output.write(b"\n")
            if bar is not None:
                bar[0].update(bar[1], advance=len(batch_messages))
    finally:
        if bar is not None:
            bar[0].stop()
    summary.seconds = time.perf_counter() - started
    return summary


def _progress(total: int | None) -> tuple[Progress, TaskID] | None:
    if not sys.stderr.isatty():
        return None
    progress = Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True,
    )
    task = progress.add_task("ingesting", total=total)
    progress.start()
    return progress, task
