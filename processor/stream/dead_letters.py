"""`roomserver dlq`: read the dead-letter topic, and replay chosen dead letters.

A dead letter is named by where it sits in the dead-letter topic, `PARTITION:OFFSET` (the
first column of `dlq list`); its partition is also the input partition it came from.
Replaying one re-produces its original bytes to the input topic, keyed by room ID as
`produce` does, with a `roomserver-replay-of` header naming it: meant for inputs whose cause
is fixed now (their missing prev or auth events have arrived since, the room exists now).
Replaying one twice is harmless: an event already stored is a no-op for the roomserver.
The dead-letter topic itself is never changed (it is append-only, kept forever); a replayed
input that fails again is dead-lettered again, under a new offset.
"""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.config import Settings
from processor.errors import ConfigError
from processor.stream.connect import kafka_failures_in_one_line, start_client
from processor.stream.kafka_settings import kafka_client_options
from processor.stream.topics import topic_partitions
from schemas.codecs import decode_dead_letter
from schemas.dead_letter import DeadLetter, DeadLetterReason
from schemas.errors import SchemaError

REPLAY_HEADER = "roomserver-replay-of"


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter and its place in the dead-letter topic."""

    partition: int
    offset: int
    record: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> str:
        """One line for `dlq list`: ID, reason, source, message."""
        r = self.record
        return f"{self.id}  {r.reason}  {r.topic}[{r.partition}]@{r.offset}  {r.message}"

    def as_json(self) -> dict[str, Any]:
        """What `dlq show` prints: the record, its ID, and the original as text when it is
        UTF-8 (`original` stays the exact bytes, base64)."""
        r = self.record
        shown: dict[str, Any] = {
            "id": self.id,
            "reason": r.reason,
            "message": r.message,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "original": r.original,
        }
        with contextlib.suppress(UnicodeDecodeError, ValueError):
            shown["original_text"] = r.original_bytes().decode("utf-8")
        return shown


def parse_id(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` -> (partition, offset); `ConfigError` for anything else."""
    partition, sep, offset = text.partition(":")
    try:
        if not sep:
            raise ValueError
        parsed = int(partition), int(offset)
    except ValueError:
        raise ConfigError(
            f"dead letter {text!r}: expected PARTITION:OFFSET as `dlq list` shows it"
        ) from None
    if parsed[0] < 0 or parsed[1] < 0:
        raise ConfigError(f"dead letter {text!r}: partition and offset are never negative")
    return parsed


def check_reason(reason: str) -> str:
    known = [r.value for r in DeadLetterReason]
    if reason not in known:
        raise ConfigError(f"unknown dead-letter reason {reason!r}: one of {', '.join(known)}")
    return reason


@kafka_failures_in_one_line
async def read_dead_letters(
    settings: Settings,
    *,
    reason: str | None = None,
    ids: Iterable[tuple[int, int]] | None = None,
) -> tuple[list[StoredDeadLetter], list[str]]:
    """The dead letters on `settings.dead_letter_topic` up to its end offsets now, in
    (partition, offset) order; only those with `reason`, or at `ids`, when given; and the
    IDs of records there that are not dead letters (another producer wrote them).
    `TopicNotFound` when the topic does not exist, `ConfigError` for an ID it does not hold.
    """
    wanted = set(ids) if ids is not None else None
    topic = settings.dead_letter_topic
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        isolation_level="read_committed",
        # Not only a seek: a seek after assign() races with the position reset assign()
        # starts, which would otherwise use the default, "latest".
        auto_offset_reset="earliest",
        # A dead letter holds a whole input, up to the topic's 10 MiB.
        max_partition_fetch_bytes=11 * 1024 * 1024,
        **kafka_client_options(settings),
    )
    found: list[StoredDeadLetter] = []
    try:
        partitions = await topic_partitions(settings, topic, "ROOMSERVER_DEAD_LETTER_TOPIC")
        await start_client(consumer, settings)
        tps = [TopicPartition(topic, p) for p in partitions]
        if wanted is not None:
            tps = [tp for tp in tps if any(p == tp.partition for p, _ in wanted)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps) if tps else {}
        starts = await consumer.beginning_offsets(tps) if tps else {}
        if wanted is not None:
            missing = sorted(
                (p, o) for p, o in wanted
                if TopicPartition(topic, p) not in ends
                or not starts[TopicPartition(topic, p)] <= o < ends[TopicPartition(topic, p)]
            )
            if missing:
                raise ConfigError(
                    f"no dead letter at {', '.join(f'{p}:{o}' for p, o in missing)} in "
                    f"{topic} (see `roomserver dlq list`)"
                )
        remaining = set()
        for tp in tps:
            first = starts[tp]
            if wanted is not None:
                # Straight to the first wanted offset: no need to read what comes before.
                first = min(o for p, o in wanted if p == tp.partition)
            if first < ends[tp]:
                consumer.seek(tp, first)
                remaining.add(tp)
        bad: list[str] = []
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    if wanted is not None and (tp.partition, record.offset) not in wanted:
                        continue
                    try:
                        letter = decode_dead_letter(record.value or b"")
                    except SchemaError:
                        bad.append(f"{tp.partition}:{record.offset}")
                        continue
                    if reason is None or letter.reason == reason:
                        found.append(StoredDeadLetter(tp.partition, record.offset, letter))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    found.sort(key=lambda d: (d.partition, d.offset))
    return found, bad


def count_by_reason(letters: Iterable[StoredDeadLetter]) -> str:
    counts = Counter(d.record.reason for d in letters)
    return ", ".join(f"{reason}: {n}" for reason, n in counts.most_common())


def replay_header(settings: Settings, letter: StoredDeadLetter) -> tuple[str, bytes]:
    return REPLAY_HEADER, f"{settings.dead_letter_topic}:{letter.id}".encode()


def original(letter: StoredDeadLetter) -> bytes:
    return base64.b64decode(letter.record.original, validate=True)
