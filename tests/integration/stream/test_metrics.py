"""Observability: Prometheus /metrics and /health of `roomserver run`.

/metrics must expose events by outcome (accepted, rejected, soft-failed, dead-lettered by
reason), the batch latency histogram, state resolution time, consumer lag per partition and
the outbox backlog. /health reports "ok", and "stalled" with 503 when input waits (lag > 0)
and nothing was processed for `stall_seconds`. Time is a fake clock moved by the test, and
the stall is a worker blocked on its lock, held by the test: nothing waits for time to pass.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor.config import Settings
from processor.generate import generate
from processor.generate.traffic import write_jsonl
from processor.metrics import Health, Metrics, record_lag, serve_metrics
from processor.stream import commands
from processor.stream.service import RoomserverService
from tests.fixtures.kafka import NewTopicFactory
from tests.fixtures.services import free_port
from tests.integration.stream.topic_reader import service_settings

WAIT_SECONDS = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: bytes) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def wait_until(
    condition: Callable[[], Any], running: asyncio.Task[None], what: str
) -> Any:
    """Poll `condition` (a coroutine function) until it returns a true value; the service
    task ending first, or WAIT_SECONDS passing, fails the test with `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        value = await condition()
        if value:
            return value
        if running.done():
            running.result()
            pytest.fail(f"the service stopped before {what}")
        if loop.time() > deadline:
            pytest.fail(f"no {what} within {WAIT_SECONDS} s")
        await asyncio.sleep(0.05)


def _settings(
    kafka_bootstrap_servers: str, database_url: str, prefix: str, partitions: int, port: int
) -> Settings:
    return service_settings(
        kafka_bootstrap_servers, database_url, prefix, partitions,
        batch_size=50,
        metrics_port=port,
    )


async def test_metrics_expose_outcomes_latency_state_resolution_lag_and_backlog(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> None:
    port = free_port()
    settings = _settings(kafka_bootstrap_servers, database_url, new_topic(1), 3, port)
    traffic = generate(rooms=4, events=600, room_version="10", seed=2)
    expected = Counter(outcome for outcome in traffic.expected.values())
    assert expected["rejected"] and expected["soft_failed"]
    text = io.StringIO()
    write_jsonl(traffic, text)
    bad = [b"not json", b"{}", b'{"kind": "new", "event": {"type": "m.room.message", '
           b'"room_id": "!nowhere:s9.example", "sender": "@a:s9.example"}}']
    data = text.getvalue().encode() + b"\n".join(bad) + b"\n"
    await commands.produce(settings, io.BytesIO(data))

    service = RoomserverService(settings)
    running = asyncio.create_task(service.run())
    try:
        async def settled() -> Samples | None:
            try:
                _, body = await http_get(port, "/metrics")
            except OSError:
                return None  # not listening yet
            found = samples(body)
            processed = sum(
                value for (name, _), value in found.items() if name == "roomserver_events_total"
            )
            lags = [found.get(("roomserver_consumer_lag", (("partition", str(p)),)))
                    for p in range(3)]
            backlog = [v for (name, _), v in found.items() if name == "roomserver_outbox_backlog"]
            if (
                processed == len(traffic.inputs) + len(bad)
                and lags == [0.0, 0.0, 0.0]
                and backlog
                and set(backlog) == {0.0}
            ):
                return found
            return None

        # Everything processed, nothing waiting on the input, and everything committed
        # relayed (the backlog gauges exist and are 0).
        found: Samples = await wait_until(
            settled, running, "all inputs processed and relayed, lag 0"
        )
    finally:
        service.stop()
        await running

    def events(outcome: str) -> float | None:
        return found.get(("roomserver_events_total", (("outcome", outcome),)))

    assert events("accepted") == expected["accepted"]
    assert events("rejected") == expected["rejected"]
    assert events("soft_failed") == expected["soft_failed"]
    assert events("dead_lettered") == len(bad)
    dead = {
        labels[0][1]: value
        for (name, labels), value in found.items()
        if name == "roomserver_dead_letters_total"
    }
    assert dead == {"malformed": 2.0, "unknown_room": 1.0}
    # One histogram observation per committed batch, in the latency buckets.
    batches = found[("roomserver_batch_seconds_count", ())]
    assert batches >= 600 / settings.batch_size
    assert found[("roomserver_batch_seconds_bucket", (("le", "+Inf"),))] == batches
    # The generated rooms fork and merge: state resolution ran and was timed.
    assert found[("roomserver_state_resolutions_total", ())] > 0
    assert found[("roomserver_state_resolution_seconds_count", ())] > 0
    assert found[("roomserver_state_resolution_seconds_sum", ())] > 0


async def test_health_reports_a_stalled_worker_and_its_recovery(
    kafka_bootstrap_servers: str, database_url: str, new_topic: NewTopicFactory
) -> None:
    port = free_port()
    settings = _settings(kafka_bootstrap_servers, database_url, new_topic(1), 1, port)
    traffic = generate(rooms=1, events=41, room_version="10", seed=3)
    lines = [json.dumps(item).encode() for item in traffic.inputs]
    await commands.produce(settings, io.BytesIO(b"\n".join(lines[:40]) + b"\n"))

    clock = FakeClock()
    service = RoomserverService(settings)
    service.health = Health(stall_seconds=30.0, clock=clock)
    running = asyncio.create_task(service.run())

    async def health() -> dict[str, Any] | None:
        try:
            status, body = await http_get(port, "/health")
        except OSError:
            return None
        report: dict[str, Any] = json.loads(body)
        report["http_status"] = status
        return report

    try:
        async def caught_up() -> bool:
            report = await health()
            return report is not None and service.processed == 40 and report["lag"] == 0

        await wait_until(caught_up, running, "the first 40 events processed")
        clock.now += 3600  # idle for an hour with nothing to do: not stalled
        assert (await health()) == {
            "status": "ok", "lag": 0, "seconds_since_progress": 3600.0, "http_status": 200
        }

        worker = service.workers[0]
        async with worker.lock:  # the worker is stuck: the next batch cannot start
            await commands.produce(settings, io.BytesIO(lines[40] + b"\n"))

            async def lagging() -> dict[str, Any] | None:
                report = await health()
                return report if report is not None and report["lag"] == 1 else None

            report = await wait_until(lagging, running, "lag 1 on /health")
            # Input waits, but not for long yet: still ok.
            assert (report["status"], report["http_status"]) == ("ok", 200)
            clock.now += 29
            assert (await health())["status"] == "ok"  # type: ignore[index]
            clock.now += 2
            report = await health()
            assert report == {
                "status": "stalled", "lag": 1, "seconds_since_progress": 31.0,
                "http_status": 503,
            }

        async def recovered() -> dict[str, Any] | None:
            report = await health()
            return report if report is not None and report["lag"] == 0 else None

        report = await wait_until(recovered, running, "lag 0 after the worker resumed")
        assert (report["status"], report["http_status"]) == ("ok", 200)
        assert service.processed == 41
    finally:
        service.stop()
        await running


def test_stall_rule_with_a_fake_clock() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=10.0, clock=clock)
    metrics = Metrics()
    clock.now += 100
    assert not health.stalled()  # no lag: idle, not stalled

    reported = record_lag(metrics, health, {0: 50, 1: 7}, {0: 45, 1: 7}, set())
    assert reported == {0, 1}
    assert health.lag == 5
    # The stall clock starts when input starts waiting, not at the last batch before.
    clock.now += 10
    assert not health.stalled()
    clock.now += 0.5
    assert health.stalled()
    health.progressed()
    assert not health.stalled()

    # A partition handed to another instance stops being reported here.
    record_lag(metrics, health, {0: 50}, {0: 50}, reported)
    text = metrics.text().decode()
    assert 'roomserver_consumer_lag{partition="0"} 0.0' in text
    assert 'partition="1"' not in text
    assert health.lag == 0


async def test_health_endpoint_status_codes() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=5.0, clock=clock)
    metrics = Metrics()
    server = await serve_metrics(0, metrics, health.report)
    port = server.sockets[0].getsockname()[1]
    try:
        health.set_lag(3)
        status, body = await http_get(port, "/health")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        clock.now += 6
        status, body = await http_get(port, "/health")
        assert (status, json.loads(body)) == (
            503, {"status": "stalled", "lag": 3, "seconds_since_progress": 6.0}
        )
        status, body = await http_get(port, "/metrics")
        assert status == 200 and b"roomserver_batch_seconds_bucket" in body
        status, _ = await http_get(port, "/nope")
        assert status == 404
    finally:
        server.close()
        await server.wait_closed()
