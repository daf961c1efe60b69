"""The PromQL the chart ships: its alert rules and dashboards, rendered by the real helm, and
the prometheus-adapter rules documented beside it; with Grafana's and the adapter's template
placeholders filled in the way they fill them."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import CHART, render

ALERTS_ON = "monitoring.prometheusRule.enabled=true"
ADAPTER_VALUES = CHART / "docs" / "prometheus-adapter-values.yaml"
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str


def rule_groups(values: Path | None = None) -> list[dict[str, Any]]:
    """spec.groups of the chart's PrometheusRule, as `helm template` renders it."""
    (rule,) = [d for d in render(values, ALERTS_ON) if d["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alerts(values: Path | None = None) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups(values) for r in g["rules"] if "alert" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard the chart's ConfigMaps carry, by file name."""
    found: dict[str, dict[str, Any]] = {}
    for doc in render(None):
        if doc["kind"] == "ConfigMap" and "grafana_dashboard" in doc["metadata"]["labels"]:
            found.update({name: json.loads(text) for name, text in doc["data"].items()})
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(dashboard["title"], panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def variable_selectors(dashboard: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The query variables' `label_values(selector, label)`, by variable name."""
    found = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = _LABEL_VALUES.match(var["definition"])
            assert match, f"{var['name']}: not a label_values() query: {var['definition']}"
            found[var["name"]] = (match["selector"], match["label"])
    return found


def fill(expr: str, values: dict[str, str]) -> str:
    """Grafana's substitution of $name / ${name}; every variable must have a value."""

    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"no value for ${name} in {expr}"
        return values[name]

    return _VARIABLE.sub(one, expr)


def adapter_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return rules


def adapter_query(template: str, series: str, matchers: dict[str, str], group_by: str) -> str:
    """prometheus-adapter's metricsQuery template, filled as it fills it for a pods metric:
    the series name, `label="value"` (or `=~` for a set of pods) matchers, the group-by label."""
    text = ",".join(
        f'{k}=~"{v}"' if "|" in v else f'{k}="{v}"' for k, v in sorted(matchers.items())
    )
    filled = template.replace("<<.Series>>", series).replace("<<.LabelMatchers>>", text)
    return filled.replace("<<.GroupBy>>", group_by)
