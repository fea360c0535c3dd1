"""The roomserver's topics: created when missing, checked when present.

The input topic is the source of truth and must keep every message forever
(`retention.ms=-1`), the output topic must have the input's partition count (a room's
outputs go to the partition number of its input), and the output topic's maximum message
size bounds how outputs are split. A mismatch is a start-up error, never a silent
misbehaviour.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from processor.config import Settings
from processor.errors import ConfigError, TopicNotFound
from processor.stream.connect import start_client
from processor.stream.kafka_settings import kafka_client_options

#: Kafka's broker default for message.max.bytes, used when a topic does not override it.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: The dead-letter topic's max.message.bytes: a dead letter holds a whole input, base64.
DEAD_LETTER_MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicLayout:
    partitions: int
    output_max_message_bytes: int


async def _describe(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition counts of the topics that exist."""
    found: dict[str, int] = {}
    for topic in await admin.describe_topics(topics):
        if topic.get("error_code", 0) == 0:
            found[topic["topic"]] = len(topic["partitions"])
    return found


async def _wait_for_topics(
    admin: AIOKafkaAdminClient, names: list[str], attempts: int = 50
) -> dict[str, int]:
    """Partition counts once every topic is visible: a topic just created can take a moment
    to appear in the metadata of the broker that answers."""
    for _ in range(attempts):
        existing = await _describe(admin, names)
        if all(name in existing for name in names):
            return existing
        await asyncio.sleep(0.1)
    missing = [name for name in names if name not in existing]
    raise ConfigError(f"topics {missing} were created but do not appear in the metadata")


async def _topic_config(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    config: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                config[entry[0]] = entry[1]
    return config


#: CreateTopics error code for a topic that exists (another instance created it first).
_TOPIC_ALREADY_EXISTS = 36


def _check_created(response: object) -> None:
    """aiokafka answers CreateTopics with per-topic error codes instead of raising (an
    invalid name, a policy, no authorisation): the first becomes a `ConfigError`, rather
    than a wait for a topic that never comes."""
    to_object = getattr(response, "to_object", None)
    if to_object is None:
        return
    for error in to_object().get("topic_errors", []):
        code = error.get("error_code", 0)
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            detail = error.get("error_message") or f"error code {code}"
            raise ConfigError(f"cannot create topic {error.get('topic')!r}: {detail}")


async def ensure_topics(admin: AIOKafkaAdminClient, settings: Settings) -> TopicLayout:
    """Create the missing topics, then check all of them; raises `ConfigError` on mismatch."""
    names = [settings.input_topic, settings.output_topic, settings.dead_letter_topic]
    existing = await _describe(admin, names)
    partitions = existing.get(settings.input_topic, settings.input_partitions)
    wanted = {
        settings.input_topic: NewTopic(
            settings.input_topic, partitions, 1, topic_configs={"retention.ms": "-1"}
        ),
        settings.output_topic: NewTopic(
            settings.output_topic,
            partitions,
            1,
            topic_configs={"max.message.bytes": str(settings.max_output_message_bytes)},
        ),
        # Dead letters of input partition p go to partition p (see outbox_relay).
        settings.dead_letter_topic: NewTopic(
            settings.dead_letter_topic,
            partitions,
            1,
            topic_configs={
                "retention.ms": "-1",
                "max.message.bytes": str(DEAD_LETTER_MAX_BYTES),
            },
        ),
    }
    missing = [topic for name, topic in wanted.items() if name not in existing]
    if missing:
        try:
            response = await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            response = None  # another instance created it first
        except KafkaError as e:
            raise ConfigError(f"cannot create topics {[t.name for t in missing]}: {e}") from e
        _check_created(response)
        existing = await _wait_for_topics(admin, names)

    input_config = await _topic_config(admin, settings.input_topic)
    if input_config.get("retention.ms") != "-1":
        raise ConfigError(
            f"topic {settings.input_topic}: retention.ms is {input_config.get('retention.ms')}, "
            "must be -1: the input topic is replayed to rebuild the database, so it must keep "
            f"every message (kafka-configs --alter --entity-name {settings.input_topic} "
            "--add-config retention.ms=-1)"
        )
    for name in (settings.output_topic, settings.dead_letter_topic):
        if existing.get(name) != existing.get(settings.input_topic):
            raise ConfigError(
                f"topic {name} has {existing.get(name)} partitions but "
                f"{settings.input_topic} has {existing.get(settings.input_topic)}: they must "
                "match so each input partition's outputs stay in one partition, in order"
            )
    output_config = await _topic_config(admin, settings.output_topic)
    max_bytes = int(output_config.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    return TopicLayout(
        partitions=existing[settings.input_topic], output_max_message_bytes=max_bytes
    )


async def topic_partitions(settings: Settings, topic: str, setting: str) -> list[int]:
    """The partition numbers of `topic`; `TopicNotFound` (naming the `setting` that names
    it) when it does not exist."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    try:
        await start_client(admin, settings)
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) != 0 or not described.get("partitions"):
        raise TopicNotFound(
            f"topic {topic} does not exist ({setting}; `roomserver run` creates the "
            "roomserver's topics)"
        )
    return sorted(p["partition"] for p in described["partitions"])
