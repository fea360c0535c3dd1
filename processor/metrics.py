"""Prometheus metrics and the /health endpoint.

Served by a tiny asyncio HTTP server (`serve_metrics`) on the metrics port: `/metrics` in
the Prometheus text format, `/health` as JSON with 200 when the consumer makes progress and
503 when it is stalled (lag and no progress for `stall_seconds`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "roomserver_events", "Input events by outcome", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "roomserver_dead_letters", "Dead-lettered inputs by reason", ["reason"], registry=r
        )
        self.batch_seconds = Histogram(
            "roomserver_batch_seconds",
            "Time to process one input batch (one transaction)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.state_resolutions = Counter(
            "roomserver_state_resolutions", "State resolutions run", registry=r
        )
        self.state_resolution_seconds = Histogram(
            "roomserver_state_resolution_seconds",
            "Time spent in state resolution per batch",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "roomserver_consumer_lag", "Input messages not yet processed", ["partition"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "roomserver_outbox_backlog", "Outputs committed but not yet relayed", ["partition"],
            registry=r,
        )
        self.consumer_restarts = Counter(
            "roomserver_consumer_restarts", "Kafka consumers recreated after a stall", registry=r
        )


@dataclass
class Health:
    """Progress tracking for /health: stalled = lag > 0 and no progress for a while."""

    stall_seconds: float
    last_progress: float = field(default_factory=time.monotonic)
    lag: int = 0

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def stalled(self) -> bool:
        return self.lag > 0 and time.monotonic() - self.last_progress > self.stall_seconds

    def report(self) -> dict[str, object]:
        return {
            "status": "stalled" if self.stalled() else "ok",
            "lag": self.lag,
            "seconds_since_progress": round(time.monotonic() - self.last_progress, 3),
        }


async def serve_metrics(
    port: int, metrics: Metrics, health: Callable[[], dict[str, object]], host: str = "127.0.0.1"
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b"/"
            if path == b"/metrics":
                status, body, kind = 200, generate_latest(metrics.registry), b"text/plain"
            elif path == b"/health":
                report = health()
                status = 200 if report.get("status") == "ok" else 503
                body, kind = json.dumps(report).encode(), b"application/json"
            else:
                status, body, kind = 404, b"not found\n", b"text/plain"
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, kind, len(body))
            )
            writer.write(body)
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
