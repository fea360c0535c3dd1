"""The metrics `roomserver run` exports, as Prometheus sees them: sample names and labels."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from processor.metrics import Metrics

#: The sample names Prometheus stores for one metric family of each type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}

#: Labels Prometheus adds to every scraped sample (target labels; the k8s ServiceMonitor
#: adds more, but the dashboard relies only on these two).
TARGET_LABELS = frozenset({"instance", "job"})


def exported_samples() -> dict[str, set[str]]:
    """Sample name -> its label names, for every metric of `Metrics`.

    Labelled metrics have no samples until a child exists, so the label names come from the
    metric objects (prometheus_client keeps them in `_labelnames`); the registry's own list
    of families is checked against those objects so that none is missed.
    """
    metrics = Metrics()
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    families = {family.name: family.type for family in metrics.registry.collect()}
    by_name = {w._name: w for w in wrappers}
    assert set(by_name) == set(families), "a metric registered outside a Metrics attribute"
    samples: dict[str, set[str]] = {}
    for name, kind in families.items():
        labels = set(by_name[name]._labelnames)
        for suffix in SUFFIXES[kind]:
            samples[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return samples
