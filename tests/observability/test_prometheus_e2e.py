"""A real Prometheus scraping a real runtime while the openai client sends it requests: every
query the chart ships evaluates, and the serving dashboard's key panels draw data."""

import math
import time

from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.scaling import IN_FLIGHT_METRIC, in_flight_query

from tests.observability.conftest import MAX_QUEUED, MODEL, NAMESPACE, POD, Traffic
from tests.observability.prometheus import Prometheus
from tests.observability.queries import (
    adapter_query,
    adapter_rules,
    alerts,
    dashboards,
    fill,
    panel_queries,
    variable_selectors,
)

# Grafana's values for one ModelService "tiny" in namespace obs-test; 4 scrapes per rate window.
VARIABLES = {"namespace": NAMESPACE, "model": MODEL, "finetunejob": ".*"}
RANGE_RATE = "4s"
# Panels that must draw something above zero while requests run.
KEY_PANELS = (
    "Requests by status",
    "Time to first token",
    "Tokens per second",
    "In flight and queued",
)


def values_over(prom: Prometheus, expr: str, traffic: Traffic) -> list[float]:
    values = prom.query_range(expr, traffic.start, traffic.end)
    return [v for v in values if not math.isnan(v)]


def test_every_query_of_the_dashboards_and_alerts_evaluates(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    """Instant queries, as the alerting rules and a dashboard's first paint run them. The
    operator's queries find nothing here (no operator is scraped: tests/operator does that) but
    must still parse and evaluate."""
    values = {**VARIABLES, "__rate_interval": "1m"}
    queries = [q for dash in dashboards().values() for q in panel_queries(dash)]
    assert len(queries) > 30
    for query in queries:
        prometheus.query(fill(query.expr, values))
    for rule in alerts().values():
        prometheus.query(rule["expr"])


def test_key_serving_panels_draw_the_traffic(prometheus: Prometheus, traffic: Traffic) -> None:
    assert traffic.requests >= 6
    values = {**VARIABLES, "__rate_interval": RANGE_RATE}
    serving = dashboards()["modelkube-serving.json"]
    by_panel: dict[str, list[float]] = {}
    for query in panel_queries(serving):
        by_panel.setdefault(query.panel, [])
        by_panel[query.panel] += values_over(prometheus, fill(query.expr, values), traffic)
    for panel in KEY_PANELS:
        assert max(by_panel[panel], default=0) > 0, f"{panel}: no data\n{prometheus.log()}"
    (p95,) = [
        q.expr
        for q in panel_queries(serving)
        if q.panel == "Time to first token" and q.expr.startswith("histogram_quantile(0.95")
    ]
    ttft = values_over(prometheus, fill(p95, values), traffic)
    assert ttft and all(0 < v < 60 for v in ttft), ttft


def test_status_codes_and_limits_reach_prometheus(prometheus: Prometheus, traffic: Traffic) -> None:
    statuses = {
        s["metric"]["status"]
        for s in prometheus.query(f'modelkube_requests_total{{namespace="{NAMESPACE}"}}')
    }
    assert {"200", "404"} <= statuses
    (limit,) = prometheus.query(f'modelkube_max_queued_requests{{model="{MODEL}"}}')
    assert float(limit["value"][1]) == MAX_QUEUED
    in_flight = f'max_over_time(modelkube_requests_in_flight{{pod="{POD}"}}[1m])'
    assert float(prometheus.query(in_flight)[0]["value"][1]) > 0


def test_dashboard_variables_find_the_namespace_and_model(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    serving = variable_selectors(dashboards()["modelkube-serving.json"])
    namespaces = {s["namespace"] for s in prometheus.series(serving["namespace"][0])}
    assert NAMESPACE in namespaces
    selector, label = serving["model"]
    models = {s[label] for s in prometheus.series(fill(selector, VARIABLES))}
    assert models == {MODEL}


def test_prometheus_loads_and_evaluates_the_alert_rules(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    deadline = time.monotonic() + 10
    while True:
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if all(r.get("lastEvaluation", "").startswith("20") for r in rules):
            break
        assert time.monotonic() < deadline, "rules never evaluated"
        time.sleep(0.5)
    assert {r["name"] for r in rules} == set(alerts())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r["lastError"]) for r in rules]


def test_prometheus_adapter_serves_in_flight_requests_per_pod(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    """The documented prometheus-adapter rule, filled as the adapter fills it when the HPA asks
    for the pods of one ModelService, yields the metric the operator's HPA names, per pod."""
    (rule,) = adapter_rules()
    series = prometheus.series(rule["seriesQuery"])
    assert {(s["namespace"], s["pod"]) for s in series} == {(NAMESPACE, POD)}
    assert rule["name"]["as"] == IN_FLIGHT_METRIC
    matchers = {"namespace": NAMESPACE, "pod": f"{POD}|tiny-1"}
    expr = adapter_query(rule["metricsQuery"], series[0]["__name__"], matchers, "pod")
    assert prometheus.query(expr)[0]["metric"] == {"pod": POD}
    assert max(values_over(prometheus, expr, traffic)) > 0


def test_keda_trigger_query_sees_the_services_requests(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    """The query the operator puts in a ScaledObject's prometheus trigger: one number, the
    service's in-flight requests over all its pods."""
    owner = Owner("modelkube.io/v1alpha1", "ModelService", MODEL, NAMESPACE, "uid", 1)
    expr = in_flight_query(owner)
    (sample,) = prometheus.query(expr)
    assert sample["metric"] == {}
    assert max(values_over(prometheus, expr, traffic)) > 0
