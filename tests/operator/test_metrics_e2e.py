"""The operator's /metrics on the real control plane, scraped by a real Prometheus: reconcile
counters, the per-resource gauges, and every query of the operator dashboard and its alerts."""

import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.controlplane.cluster import ControlPlane
from tests.observability.prometheus import Prometheus, Target
from tests.observability.queries import alerts, dashboards, fill, panel_queries
from tests.operator.harness import OPERATOR_NS, OperatorProcess, wait_until, with_condition
from tests.operator.test_finetunejob_e2e import submit
from tests.operator.test_modelservice_e2e import apply, modelservice, ready

# What the operator dashboard must show for one Ready ModelService and one Running FineTuneJob.
WITH_DATA = (
    "Reconciles",
    "Reconcile duration",
    "In progress and out of sync",
    "Operator memory",
    "ModelServices ready",
    "Ready and desired replicas",
    "FineTuneJobs by state",
    "Progress",
    "Stalled jobs",
    "Training loss",
    "Validation loss",
)


def scrape(operator: OperatorProcess) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def report_progress(cp: ControlPlane, namespace: str, name: str) -> None:
    """What the trainer writes to its FineTuneJob's status every few iterations."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    progress = {"iteration": 5, "totalIterations": 20, "trainLoss": "2.5"}
    progress |= {"validationLoss": "2.75", "updateTime": now}
    patch = json.dumps({"status": {"progress": progress}})
    cp.kubectl(
        "patch", "finetunejob", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", patch,
    )  # fmt: skip


def test_operator_metrics_through_prometheus(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    apply(cp, namespace, modelservice("chat", replicas=1))
    wait_until(lambda: ready(cp, namespace, "chat"), 30, f"chat Ready\n{operator.log()}")
    submit(cp, namespace, "tune")
    wait_until(
        lambda: with_condition(cp, "finetunejob", namespace, "tune", "Running"), 60, "tune Running"
    )
    report_progress(cp, namespace, "tune")

    ms = f"modelservice=chat,namespace={namespace}"
    job = f"finetunejob=tune,namespace={namespace}"
    # The gauges come from the operator's watch of each kind, two streams with no order
    # between them: the ModelService's Ready is waited for too, not assumed from the job's.
    shown = (
        f"modelkube_finetunejob_progress_ratio{{{job}}}",
        f"modelkube_modelservice_condition{{condition=Ready,{ms},status=true}}",
    )
    got = wait_until(
        lambda: all((s := scrape(operator)).get(name) for name in shown) and s,
        15,
        "the progress report and the ModelService's Ready in /metrics",
    )
    assert got["modelkube_operator_reconciles_total{kind=ModelService,result=success}"] >= 1
    assert got["modelkube_operator_reconciles_total{kind=FineTuneJob,result=success}"] >= 1
    assert got["modelkube_operator_reconcile_duration_seconds_count{kind=ModelService}"] >= 1
    assert got["modelkube_operator_reconciles_in_progress{kind=ModelService}"] >= 0
    assert got[f"modelkube_modelservice_ready_replicas{{{ms}}}"] == 1
    assert got[f"modelkube_modelservice_desired_replicas{{{ms}}}"] == 1
    assert got[f"modelkube_modelservice_condition{{condition=Ready,{ms},status=true}}"] == 1
    assert got[f"modelkube_finetunejob_progress_ratio{{{job}}}"] == 0.25
    assert got[f"modelkube_finetunejob_train_loss{{{job}}}"] == 2.5
    assert got[f"modelkube_finetunejob_validation_loss{{{job}}}"] == 2.75
    assert 0 <= got[f"modelkube_finetunejob_seconds_since_progress{{{job}}}"] < 60
    assert got[f"modelkube_finetunejob_condition{{condition=Running,{job},status=true}}"] == 1

    # As a ServiceMonitor with honorLabels scrapes it: the target's own namespace label yields
    # to the resources' namespace label.
    target = Target(
        "modelkube-operator",
        f"127.0.0.1:{operator.metrics_port}",
        {"namespace": OPERATOR_NS, "pod": "modelkube-operator-0"},
        honor_labels=True,
    )
    prom = Prometheus(tmp_path / "prometheus", [target]).start()
    try:
        values = {"namespace": namespace, "model": "chat", "finetunejob": "tune"}
        values["__rate_interval"] = "1m"
        dash = dashboards()["modelkube-operator.json"]
        assert set(WITH_DATA) <= {q.panel for q in panel_queries(dash)}

        def missing() -> list[str]:
            shown = [q.panel for q in panel_queries(dash) if prom.query(fill(q.expr, values))]
            return [panel for panel in WITH_DATA if panel not in shown]

        # Rates need two scrapes of a counter: wait for the data itself, scrape by scrape.
        try:
            wait_until(lambda: not missing(), 30, "every panel with data")
        except TimeoutError:
            raise AssertionError(f"panels without data: {missing()}\n{prom.log()}") from None
        for rule in alerts().values():
            prom.query(rule["expr"])  # evaluates: QueryError otherwise
    finally:
        prom.stop()
