"""The operator's metrics: plain asserts on what a scrape would read, from a fake owners index."""

from datetime import UTC, datetime
from typing import Any

import pytest
from modelkube_operator import metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def cond(type_: str, status: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": "R", "message": ""}


def service(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "ModelService",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"model": {"uri": "builtin://tiny"}, **extra.pop("spec", {})},
        "status": extra.pop("status", {}),
    }


def job(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {},
        "status": status,
    }


def scrape(owners: dict[Any, list[dict[str, Any]]]) -> dict[str, float]:
    """Every sample the collector yields, as 'name{label=value,...}' -> value."""
    collector = metrics.ResourceCollector(clock=lambda: NOW)
    collector.owners = owners
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def test_modelservice_replicas_and_conditions_come_from_the_index() -> None:
    ready = service(
        "chat",
        spec={"replicas": 3},
        status={"replicas": 3, "readyReplicas": 2, "conditions": [cond("Ready", "True")]},
    )
    scaled = service("big", spec={"autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    got = scrape({("ModelService", "team-a", "chat"): [ready], ("x",): [scaled]})
    ids = "modelservice=chat,namespace=team-a"
    assert got[f"modelkube_modelservice_replicas{{{ids}}}"] == 3
    assert got[f"modelkube_modelservice_ready_replicas{{{ids}}}"] == 2
    assert got[f"modelkube_modelservice_desired_replicas{{{ids}}}"] == 3
    assert got[f"modelkube_modelservice_condition{{condition=Ready,{ids},status=true}}"] == 1
    assert got[f"modelkube_modelservice_condition{{condition=Ready,{ids},status=false}}"] == 0
    assert got[f"modelkube_modelservice_condition{{condition=Ready,{ids},status=unknown}}"] == 0
    # Autoscaled: the floor the HPA keeps; no status yet reads as zero pods.
    big = "modelservice=big,namespace=team-a"
    assert got[f"modelkube_modelservice_desired_replicas{{{big}}}"] == 2
    assert got[f"modelkube_modelservice_ready_replicas{{{big}}}"] == 0
    assert not any("modelservice=big" in k and "_condition" in k for k in got)


def test_finetunejob_progress_losses_and_staleness() -> None:
    running = job(
        "tune",
        {
            "conditions": [cond("Running", "True"), cond("Failed", "False")],
            "startTime": "2026-01-02T02:00:00Z",
            "progress": {
                "iteration": 25,
                "totalIterations": 100,
                "trainLoss": "1.75",
                "validationLoss": "2.5",
                "updateTime": "2026-01-02T03:00:05Z",
            },
        },
    )
    got = scrape({("FineTuneJob", "team-a", "tune"): [running]})
    ids = "finetunejob=tune,namespace=team-a"
    assert got[f"modelkube_finetunejob_progress_ratio{{{ids}}}"] == 0.25
    assert got[f"modelkube_finetunejob_train_loss{{{ids}}}"] == 1.75
    assert got[f"modelkube_finetunejob_validation_loss{{{ids}}}"] == 2.5
    assert got[f"modelkube_finetunejob_seconds_since_progress{{{ids}}}"] == 240
    assert got[f"modelkube_finetunejob_condition{{condition=Running,{ids},status=true}}"] == 1
    assert got[f"modelkube_finetunejob_condition{{condition=Failed,{ids},status=false}}"] == 1


def test_a_job_with_no_report_yet_counts_from_its_start_and_has_no_losses() -> None:
    started = job("new", {"startTime": "2026-01-02T03:00:00Z", "progress": {"trainLoss": ""}})
    pending = job("pending", {})
    got = scrape({"a": [started], "b": [pending]})
    assert got[
        "modelkube_finetunejob_seconds_since_progress{finetunejob=new,namespace=team-a}"
    ] == (245)
    assert not any("finetunejob=pending" in k for k in got)
    assert not any(k.startswith("modelkube_finetunejob_train_loss") for k in got)
    assert not any(k.startswith("modelkube_finetunejob_progress_ratio") for k in got)


def test_an_empty_index_yields_no_resource_series() -> None:
    assert scrape({}) == {}


def value(name: str, **labels: str) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_reconciling_counts_results_errors_and_time() -> None:
    before = value("modelkube_operator_reconciles_total", kind="FineTuneJob", result="success")
    failed = value("modelkube_operator_reconciles_total", kind="FineTuneJob", result="error")
    timed = value("modelkube_operator_reconcile_duration_seconds_count", kind="FineTuneJob")
    with metrics.reconciling("FineTuneJob"):
        assert value("modelkube_operator_reconciles_in_progress", kind="FineTuneJob") == 1
    with pytest.raises(KeyError), metrics.reconciling("FineTuneJob"):
        raise KeyError("boom")
    assert value("modelkube_operator_reconciles_in_progress", kind="FineTuneJob") == 0
    assert (
        value("modelkube_operator_reconciles_total", kind="FineTuneJob", result="success")
        == before + 1
    )
    assert (
        value("modelkube_operator_reconciles_total", kind="FineTuneJob", result="error")
        == failed + 1
    )
    assert value("modelkube_operator_reconcile_errors_total", kind="FineTuneJob", error="KeyError")
    assert value("modelkube_operator_reconcile_duration_seconds_count", kind="FineTuneJob") == (
        timed + 2
    )


def test_out_of_sync_counts_per_kind_and_resets_to_zero() -> None:
    metrics.count_out_of_sync([service("a"), service("b"), job("c", {})])
    assert value("modelkube_operator_out_of_sync_resources", kind="ModelService") == 2
    assert value("modelkube_operator_out_of_sync_resources", kind="FineTuneJob") == 1
    metrics.count_out_of_sync([])
    assert value("modelkube_operator_out_of_sync_resources", kind="ModelService") == 0
