"""The chart's Grafana dashboards: well-formed models, loaded by the sidecar, naming only metrics
that modelkube exports."""

import json
import re
from types import ModuleType
from typing import Any

from modelkube_operator import metrics as operator_metrics

import modelkube_serving.gateway.metrics as gateway_metrics
import modelkube_serving.metrics as serving_metrics
from tests.chart.helm import CHART, render
from tests.observability.queries import alerts, dashboards, panel_queries, variable_selectors

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_METRIC = re.compile(r"\b(modelkube_[a-z_]+)\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported(*modules: ModuleType) -> set[str]:
    return {
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, str) and value.startswith("modelkube_")
    }


def named_metrics(expr: str) -> set[str]:
    names = set()
    for name in _METRIC.findall(expr):
        for suffix in _HISTOGRAM_SUFFIXES:
            name = name.removesuffix(suffix) if name.endswith(suffix) else name
        names.add(name)
    return names


def test_the_sidecar_gets_one_configmap_per_dashboard_file() -> None:
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    maps = [
        d for d in render(None) if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    assert sorted(name for m in maps for name in m["data"]) == files
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    assert set(dashboards()) == {"modelkube-serving.json", "modelkube-operator.json"}


def test_dashboards_pick_their_datasource_namespace_and_model() -> None:
    for name, dash in dashboards().items():
        assert dash["schemaVersion"] >= 39, name
        assert dash["uid"] == name.removesuffix(".json")
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert {"namespace", "model"} <= set(variable_selectors(dash)), name
        for panel in dash["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert panel["description"], f"{panel['title']} says what it shows"
            assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    pos = panel["gridPos"]
    return {
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    }


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    for name, dash in dashboards().items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        taken: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
            assert not cells(panel) & taken, f"{name}: {panel['title']} overlaps another panel"
            taken |= cells(panel)


def test_dashboards_and_alerts_name_only_metrics_modelkube_exports() -> None:
    known = exported(serving_metrics, gateway_metrics, operator_metrics)
    exprs = [q.expr for dash in dashboards().values() for q in panel_queries(dash)]
    exprs += [sel for dash in dashboards().values() for sel, _ in variable_selectors(dash).values()]
    exprs += [rule["expr"] for rule in alerts().values()]
    used = set().union(*(named_metrics(e) for e in exprs))
    assert used - known == set()
    # What the alerts and the serving dashboard are built on must stay in use.
    for name in (
        "modelkube_requests_total",
        "modelkube_time_to_first_token_seconds",
        "modelkube_max_queued_requests",
        "modelkube_finetunejob_seconds_since_progress",
        serving_metrics.UPSTREAM_REQUESTS,
        serving_metrics.UPSTREAM_CIRCUIT_OPEN,
    ):
        assert name in used


def test_the_serving_dashboard_draws_every_metric_the_runtime_exports() -> None:
    """A new runtime metric needs a panel (or a reason here): an info series is not drawn."""
    undrawn = {serving_metrics.BLAS_INFO}  # which BLAS: the TTFT alert's runbook names it
    runtime = {
        value
        for name, value in vars(serving_metrics).items()
        if name.isupper() and isinstance(value, str) and value.startswith("modelkube_")
    }
    serving = dashboards()["modelkube-serving.json"]
    drawn = set().union(*(named_metrics(q.expr) for q in panel_queries(serving)))
    assert runtime - undrawn - drawn == set()


def test_the_serving_dashboard_has_a_gateway_row_drawing_every_gateway_metric() -> None:
    serving = dashboards()["modelkube-serving.json"]
    assert "Gateway (modelkube gateway)" in [p["title"] for p in serving["panels"]]
    drawn = set().union(*(named_metrics(q.expr) for q in panel_queries(serving)))
    gateway = {m for m in exported(gateway_metrics) if not m.startswith("modelkube_serving")}
    assert gateway and gateway - drawn == set()
