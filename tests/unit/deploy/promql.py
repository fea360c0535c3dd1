"""What a PromQL expression reads: metric names, and the label names it matches or groups by.

Just enough PromQL for dashboard queries (selectors, functions, aggregations with
by/without, binary operators with on/ignoring/group_*), so a test can compare a dashboard
with the metrics the service exports. Anything it does not understand raises `ValueError`
rather than passing unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"'  # string literal
    r"|\[[^\]]*\]"  # range or subquery: [5m], [$__rate_interval]
    r"|\{[^}]*\}"  # label matchers
    r"|\$\{?\w+\}?"  # Grafana variable outside a string
    r"|[A-Za-z_:][A-Za-z0-9_:]*"  # identifier
    r"|\d+(?:\.\d+)?(?:e[+-]?\d+)?"  # number
    r"|==|!=|>=|<=|[-+*/%^<>(),=]"  # operators and punctuation
)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:\\.|[^"\\])*"\s*,?')

#: Keywords followed by a parenthesised list of label names.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
#: Binary-operator keywords and modifiers that stand alone.
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
#: Functions and aggregations the dashboards may use (a typo is an error, not a metric).
FUNCTIONS = frozenset({
    "abs", "avg", "avg_over_time", "ceil", "clamp_max", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile", "idelta",
    "increase", "irate", "label_values", "max", "max_over_time", "min", "min_over_time",
    "quantile", "quantile_over_time", "rate", "round", "scalar", "sort", "sort_desc", "sum",
    "sum_over_time", "time", "topk", "bottomk", "vector",
})


@dataclass
class Reads:
    """Per metric name, the label names its selectors match on; and the grouping labels."""

    selectors: dict[str, set[str]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def _matcher_labels(braces: str) -> set[str]:
    inner = braces[1:-1]
    labels: set[str] = set()
    position = 0
    while position < len(inner):
        match = _MATCHER.match(inner, position)
        if match is None:
            if inner[position:].strip():
                raise ValueError(f"cannot read label matchers {braces!r}")
            break
        labels.add(match[1])
        position = match.end()
    return labels


def reads(expr: str) -> Reads:
    """The metrics and labels `expr` reads (see the module docstring)."""
    leftover = _TOKEN.sub("", expr).strip()
    if leftover:
        raise ValueError(f"cannot read {leftover!r} in {expr!r}")
    tokens = _TOKEN.findall(expr)
    found = Reads()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in GROUPING:
            if following != "(":
                raise ValueError(f"{token} without a label list in {expr!r}")
            close = tokens.index(")", i)
            found.grouping.update(t for t in tokens[i + 2 : close] if t != ",")
            i = close + 1
            continue
        if token[0] == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}: {token}")
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token):
            if following == "(" or (token in FUNCTIONS and following in GROUPING):
                # A call, or an aggregation with its `by (...)` first: sum by (le) (...)
                if token not in FUNCTIONS:
                    raise ValueError(f"unknown function {token!r} in {expr!r}")
            elif token not in KEYWORDS:
                labels = found.selectors.setdefault(token, set())
                if following.startswith("{"):
                    labels.update(_matcher_labels(following))
                    i += 1
        i += 1
    return found


def label_values_query(query: str) -> tuple[str, str]:
    """(metric, label) of a Grafana `label_values(metric, label)` variable query."""
    match = re.fullmatch(
        r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*", query
    )
    if match is None:
        raise ValueError(f"not a label_values(metric, label) query: {query!r}")
    return match[1], match[2]
