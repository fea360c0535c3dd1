"""The Grafana dashboard (deploy/grafana) queries only metrics and labels the service exports.

Every PromQL expression of every panel and variable is read (tests/unit/deploy/promql.py) and
compared with `processor.metrics.Metrics`' registry: a renamed metric or label, or a panel
written for a metric that does not exist, fails here instead of showing "No data".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deploy.exported import TARGET_LABELS, exported_samples
from tests.unit.deploy.promql import label_values_query, reads

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "roomserver.json"


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold theirs


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def problems(expr: str, samples: dict[str, set[str]]) -> list[str]:
    """What in `expr` the service does not export (empty: all of it does)."""
    found = reads(expr)
    wrong = [f"metric {name} is not exported" for name in found.selectors if name not in samples]
    for name, labels in found.selectors.items():
        if name in samples:
            unknown = labels - samples[name] - TARGET_LABELS
            wrong += [f"{name} has no label {label}" for label in sorted(unknown)]
    available = set(TARGET_LABELS).union(
        *(samples[name] for name in found.selectors if name in samples)
    )
    wrong += [f"no metric here has label {label}" for label in sorted(found.grouping - available)]
    return wrong


def test_every_query_reads_exported_metrics_and_labels() -> None:
    samples = exported_samples()
    dashboard = load()
    exprs = expressions(dashboard)
    assert len(exprs) >= 10
    wrong = {f"{title}: {expr}": problems(expr, samples) for title, expr in exprs}
    assert {query: found for query, found in wrong.items() if found} == {}


def test_variables_read_exported_metrics() -> None:
    samples = exported_samples()
    for variable in load()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        metric, label = label_values_query(variable["query"]["query"])
        assert metric in samples, variable
        assert label in samples[metric] | TARGET_LABELS, variable


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(roomserver_event_total[5m])", ["metric roomserver_event_total is not exported"]),
        # A histogram is stored as _bucket/_sum/_count: the bare name has no samples.
        ("roomserver_batch_seconds", ["metric roomserver_batch_seconds is not exported"]),
        (
            'sum by (room) (rate(roomserver_events_total{outcome="accepted"}[1m]))',
            ["no metric here has label room"],
        ),
        ('roomserver_consumer_lag{topic="x"}', ["roomserver_consumer_lag has no label topic"]),
        ("sum by (le) (rate(roomserver_batch_seconds_bucket[1m]))", []),
        ('roomserver_outbox_backlog{instance=~".*"} and roomserver_consumer_lag', []),
    ],
)
def test_the_check_catches_what_is_not_exported(expr: str, expected: list[str]) -> None:
    assert problems(expr, exported_samples()) == expected


def test_unreadable_expressions_are_errors_not_passes() -> None:
    with pytest.raises(ValueError, match="unknown function"):
        reads("ratee(roomserver_events_total[1m])")
    with pytest.raises(ValueError, match="without a metric name"):
        reads('{__name__="roomserver_events_total"}')
    with pytest.raises(ValueError, match="cannot read"):
        reads("roomserver_events_total @ 5")


def test_the_issue_panels_are_there() -> None:
    """Events by outcome, dead letters by reason, lag per partition, batch latency, state
    resolution time, outbox backlog: each has a panel reading its metric (grouped by the
    label the panel is about)."""
    dashboard = load()
    queried: dict[str, set[str]] = {}
    for _, expr in expressions(dashboard):
        found = reads(expr)
        for name in found.selectors:
            queried.setdefault(name, set()).update(found.grouping)
    assert "outcome" in queried["roomserver_events_total"]
    assert "reason" in queried["roomserver_dead_letters_total"]
    assert "partition" in queried["roomserver_consumer_lag"]
    assert "partition" in queried["roomserver_outbox_backlog"]
    assert "le" in queried["roomserver_batch_seconds_bucket"]
    assert "le" in queried["roomserver_state_resolution_seconds_bucket"]


def test_panels_use_the_datasource_variable_and_unique_ids() -> None:
    """Every query goes through the `datasource` variable, so the dashboard works in any
    Grafana (compose's, or one where the Prometheus has another UID)."""
    dashboard = load()
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert "datasource" in names
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
