"""The Grafana dashboard (deploy/grafana/) and the alert rules (deploy/kubernetes/
prometheusrule.yaml) against the metrics the workers really export (worker/metrics.py).

A query that names a metric nobody exports draws an empty panel or an alert that never fires,
silently: every PromQL expression is parsed for the metric names it selects, and each must be
a series worker/metrics.py defines (namespace prefix, ``_total`` for counters, ``_bucket``,
``_sum``, ``_count`` for histograms). Every metric is on some panel, and the README's list of
alerts is the rule file's.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "bluebutton-ingest.json"
RULES = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
README = ROOT / "README.md"
SEVERITIES = {"critical", "warning", "info"}
# The series a family of each type exposes (a counter's and histogram's _created are not
# values anyone queries).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,")


def balanced(expr: str) -> bool:
    """Every bracket closes, in order (strings aside): the syntax error a hand edit makes most."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, strings, ranges and
    grouping clauses removed, then every identifier that is neither a function (followed by an
    opening parenthesis) nor a keyword."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {
        match[1]
        for match in _IDENTIFIER.finditer(text)
        if not match[2] and match[1] not in _KEYWORDS
    }


@functools.cache
def families() -> dict[str, set[str]]:
    """Each metric family worker/metrics.py defines, with the series names it exposes."""
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                found[family.name] = {family.name + s for s in SUFFIXES[family.type]}
    return found


def defined_series() -> set[str]:
    return set().union(*families().values())


@functools.cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    ]


@functools.cache
def rules() -> list[dict[str, Any]]:
    with RULES.open(encoding="utf-8") as stream:
        (document,) = [doc for doc in yaml.safe_load_all(stream) if doc]
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def test_the_parser_finds_metric_names_and_only_them() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (app, le) (rate(a_bucket{app=~"$app", s="5.."}'
        "[$__rate_interval]))) / on (app) group_left b > 0.2 and absent(c) or d offset 1h"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d"}
    assert balanced(expr)
    assert not balanced("sum(rate(x[5m])")
    assert not balanced('rate(x{a="b"]) ')


def test_the_metrics_module_is_read() -> None:
    # The check below is only as good as this list: the families worker/metrics.py defines.
    assert "bbingest_bb2_requests" in families()
    assert families()["bbingest_budget_wait_seconds"] >= {"bbingest_budget_wait_seconds_bucket"}
    assert families()["bbingest_queue_depth"] == {"bbingest_queue_depth"}


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_dashboard_queries_name_only_defined_metrics(title: str, expr: str) -> None:
    assert balanced(expr), f"{title}: unbalanced brackets in {expr!r}"
    names = metric_names(expr)
    assert names, f"{title}: no metric in {expr!r}"
    assert names <= defined_series(), f"{title}: unknown {names - defined_series()}"


def test_dashboard_variables_read_defined_metrics() -> None:
    text = json.dumps(dashboard()["templating"])
    names = set(_LABEL_VALUES.findall(text))
    assert names, "no label_values() variable"
    assert names <= defined_series()


def test_every_metric_is_on_a_panel() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    missing = [family for family, series in families().items() if not series & used]
    assert not missing, f"metrics on no panel: {missing}"


def test_dashboard_is_importable_grafana_json() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36  # Grafana 9 and later
    every = list(panels(board))
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), "two panels share an id"
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']}: wider than the grid"
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']}: no query"
            # The datasource is a variable: the dashboard imports into any Grafana.
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alert_rules_are_complete_and_name_only_defined_metrics() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "an alert is defined twice"
    for rule in rules():
        where = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, where
        assert rule["annotations"]["summary"].strip(), where
        assert rule["annotations"]["description"].strip(), where
        assert balanced(rule["expr"]), f"{where}: unbalanced brackets"
        found = metric_names(rule["expr"])
        assert found, f"{where}: no metric"
        assert found <= defined_series(), f"{where}: unknown {found - defined_series()}"


def test_the_alerts_cover_the_failures_the_readme_promises() -> None:
    # README: codes expiring or exchanged late, a missing decryption key, no worker at all.
    alerted = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    for series in (
        "bbingest_codes_expired_total",
        "bbingest_code_age_at_exchange_seconds_bucket",
        "bbingest_decrypt_key_missing_total",
        "bbingest_queue_depth",
        "bbingest_bb2_requests_total",
    ):
        assert series in alerted, series


def test_readme_lists_exactly_the_rule_files_alerts() -> None:
    """The README's alert table (one row per alert: name, severity, summary) is the rule
    file's, in its order: one source, checked, not two that drift."""
    rows = re.findall(
        r"^\| `(?P<alert>\w+)` \| (?P<severity>\w+) \| (?P<summary>[^|]+?) \|$",
        README.read_text(encoding="utf-8"),
        re.M,
    )
    expected = [
        (rule["alert"], rule["labels"]["severity"], rule["annotations"]["summary"])
        for rule in rules()
    ]
    assert rows == expected
