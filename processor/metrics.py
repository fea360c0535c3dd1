"""Prometheus metrics, consumer-lag tracking and the /health endpoint.

- `Metrics`: every metric the service exports, on its own registry (several services in
  one process, as in tests, never collide).
- `Health`: stalled = input waiting (lag > 0) and no batch committed for `stall_seconds`.
  The clock is injectable so the rule is tested without waiting.
- `watch_lag`: a task that asks the broker for the input topic's end offsets every few
  seconds and compares them with the offsets the service has *processed*. It uses its own
  client and runs beside the consume loop, so a hung consumer or a worker stuck in the
  database still shows growing lag and, after `stall_seconds`, a stalled /health.
- `serve_metrics`: a tiny asyncio HTTP server on the metrics port, on every interface (see
  `METRICS_HOST`): `/metrics` in the Prometheus text format, `/health` as JSON, 200 when ok
  and 503 when stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

#: Seconds between two lag measurements.
LAG_INTERVAL_SECONDS = 1.0


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
            "roomserver_consumer_lag",
            "Input messages not yet processed, per input partition",
            ["partition"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "roomserver_outbox_backlog", "Outputs committed but not yet relayed", ["partition"],
            registry=r,
        )
        self.consumer_restarts = Counter(
            "roomserver_consumer_restarts", "Kafka consumers recreated after a stall", registry=r
        )

    def text(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry)


@dataclass
class Health:
    """Progress tracking for /health: stalled = lag > 0 and no progress for a while.

    `clock` returns seconds (monotonic); tests pass a fake one.
    """

    stall_seconds: float
    clock: Callable[[], float] = time.monotonic
    last_progress: float = field(default=-1.0)
    lag: int = 0

    def __post_init__(self) -> None:
        if self.last_progress < 0:
            self.last_progress = self.clock()

    def progressed(self) -> None:
        self.last_progress = self.clock()

    def set_lag(self, lag: int) -> None:
        # Lag appearing after a quiet spell is not a stall yet: the clock starts when input
        # starts waiting, not at the last batch before the quiet spell.
        if self.lag == 0 and lag > 0:
            self.last_progress = self.clock()
        self.lag = lag

    def seconds_since_progress(self) -> float:
        return self.clock() - self.last_progress

    def stalled(self) -> bool:
        return self.lag > 0 and self.seconds_since_progress() > self.stall_seconds

    def report(self) -> dict[str, object]:
        return {
            "status": "stalled" if self.stalled() else "ok",
            "lag": self.lag,
            "seconds_since_progress": round(self.seconds_since_progress(), 3),
        }


def record_lag(
    metrics: Metrics,
    health: Health,
    end_offsets: Mapping[int, int],
    positions: Mapping[int, int],
    previous: set[int],
) -> set[int]:
    """Set the per-partition lag gauges and the health's total from one measurement.

    `positions` are the next offsets to process of the partitions this instance owns;
    gauges of partitions in `previous` that it no longer owns are removed (another instance
    reports them). Returns the partitions reported now.
    """
    total = 0
    for partition, position in positions.items():
        end = end_offsets.get(partition)
        if end is None:
            continue
        lag = max(0, end - position)
        total += lag
        metrics.consumer_lag.labels(str(partition)).set(lag)
    for gone in previous - set(positions):
        with contextlib.suppress(KeyError):
            metrics.consumer_lag.remove(str(gone))
    health.set_lag(total)
    return set(positions)


async def watch_lag(
    metrics: Metrics,
    health: Health,
    end_offsets: Callable[[list[int]], Awaitable[Mapping[int, int]]],
    positions: Callable[[], Mapping[int, int]],
    interval: float = LAG_INTERVAL_SECONDS,
) -> None:
    """Measure the lag every `interval` seconds until cancelled (see the module docstring).

    `end_offsets(partitions)` asks the broker; `positions()` is the service's own record of
    the next offset to process per owned partition. A failed measurement is logged and
    retried at the next tick: the lag gauges then keep their last value.
    """
    reported: set[int] = set()
    while True:
        owned = dict(positions())
        try:
            ends = await end_offsets(sorted(owned)) if owned else {}
        except Exception as e:  # broker away: report on the next tick
            log.debug("lag measurement failed: %s", e)
        else:
            reported = record_lag(metrics, health, ends, owned, reported)
        await asyncio.sleep(interval)


#: Where /metrics and /health listen: every IPv4 interface. The port is set only to be scraped
#: and probed, and that comes from outside the process's network namespace: Prometheus in
#: another container, the kubelet's probes at the pod's IP. Loopback only was unreachable
#: from both. Neither endpoint reveals more than counts and lag.
METRICS_HOST = "0.0.0.0"


async def serve_metrics(
    port: int,
    metrics: Metrics,
    health: Callable[[], dict[str, object]],
    host: str = METRICS_HOST,
) -> asyncio.Server:
    """Serve /metrics and /health on `host:port` (port 0: any free port; see
    `server.sockets[0].getsockname()`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b"/"
            if path == b"/metrics":
                status, reason = 200, b"OK"
                body, kind = metrics.text(), b"text/plain; version=0.0.4"
            elif path == b"/health":
                report = health()
                ok = report.get("status") == "ok"
                status, reason = (200, b"OK") if ok else (503, b"Service Unavailable")
                body, kind = json.dumps(report).encode(), b"application/json"
            else:
                status, reason, body, kind = 404, b"Not Found", b"not found\n", b"text/plain"
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, reason, kind, len(body))
            )
            writer.write(body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
