"""Reading a pod's load from its /metrics: the runtime's own exposition, and any text."""

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from modelkube_serving.gateway.pod_load import reported_load
from modelkube_serving.metrics import ModelServerCollector, RuntimeMetrics, ServerLoad


def exposition(running: int, waiting: int, with_gauges: bool = True) -> str:
    """What a runtime's /metrics says, from the runtime's own metrics and collector."""
    metrics = RuntimeMetrics()
    registry: CollectorRegistry = metrics.registry
    if with_gauges:
        load = ServerLoad(running=running, waiting=waiting, cache_usage=0.5)
        registry.register(ModelServerCollector("tiny", lambda: load))
    metrics.in_flight.labels("tiny").set(running + 7)  # another gauge, not the load
    return generate_latest(registry).decode()


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_load_is_running_plus_waiting(running: int, waiting: int) -> None:
    assert reported_load(exposition(running, waiting)) == running + waiting


def test_a_pod_without_the_gauges_reports_no_load() -> None:
    assert reported_load(exposition(0, 0, with_gauges=False)) is None


def test_label_sets_add_up_and_lookalike_names_do_not_count() -> None:
    text = (
        'vllm:num_requests_running{model_name="a"} 2.0\n'
        'vllm:num_requests_running{model_name="b"} 1.0\n'
        "vllm:num_requests_waiting 3\n"
        'vllm:num_requests_running_total{model_name="a"} 50.0\n'
        'vllm:num_requests_waiting{x="y"} NaN\n'
        'vllm:num_requests_waiting{x="y"} -4\n'
        "vllm:num_requests_running{broken\n"
    )
    assert reported_load(text) == 6


@given(st.text())
def test_any_text_reads_as_a_load_or_none(text: str) -> None:
    load = reported_load(text)
    assert load is None or load >= 0
