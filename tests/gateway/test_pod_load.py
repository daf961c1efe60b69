"""Reading a pod's load from its /metrics: the runtime's own exposition, and any text."""

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from modelkube_serving.gateway.catalog import Catalog
from modelkube_serving.gateway.pod_load import PodLoads, read_report
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
    assert read_report(exposition(running, waiting)).load == running + waiting


def test_a_pod_without_the_gauges_reports_no_load() -> None:
    assert read_report(exposition(0, 0, with_gauges=False)).load is None


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
    assert read_report(text).load == 6


@given(st.text())
def test_any_text_reads_as_a_load_or_none(text: str) -> None:
    load = read_report(text).load
    assert load is None or load >= 0


def running(count: int, served: int = 0) -> str:
    return f"vllm:num_requests_running {count}\nmodelkube_requests_total {served}\n"


def loads_of(*started: str) -> PodLoads:
    loads = PodLoads(Catalog())
    for endpoint in started:
        loads.started(endpoint)
    return loads


def test_a_pod_counting_more_than_this_gateway_sent_adds_the_others_load() -> None:
    loads = loads_of("a", "b")
    loads.reports_asked()
    loads.reports_came({"a": running(3), "b": running(1), "c": None}, 0.0)
    assert (loads.of("a"), loads.of("b"), loads.of("c")) == (3, 1, 0)
    loads.started("a")  # this gateway's own count moves at once; the others' wait for reports
    assert loads.of("a") == 4


def test_a_request_that_ended_while_the_report_came_is_not_read_as_another_clients() -> None:
    loads = loads_of("a", "a")
    loads.reports_asked()
    loads.finished("a")  # the pod counted it in the report on its way
    loads.reports_came({"a": running(2)}, 0.0)
    assert loads.of("a") == 1 and not loads.others


@given(
    st.lists(st.sampled_from(["start", "finish", "ask"]), max_size=30),
    st.integers(0, 20),
)
def test_loads_never_go_negative_and_the_own_count_is_exact(ops: list[str], reported: int) -> None:
    loads, in_flight = loads_of(), 0
    for op in ops:
        if op == "start":
            loads.started("a")
            in_flight += 1
        elif op == "finish" and in_flight:
            loads.finished("a")
            in_flight -= 1
        elif op == "ask":
            loads.reports_asked()
    loads.reports_came({"a": running(reported)}, 0.0)
    assert loads.own.get("a", 0) == in_flight
    assert loads.of("a") >= in_flight and all(v > 0 for v in loads.others.values())


def test_the_requests_served_add_up_over_label_sets() -> None:
    metrics = RuntimeMetrics()
    metrics.requests.labels("tiny", "chat", "200").inc(3)
    metrics.requests.labels("tiny", "models", "200").inc()
    text = generate_latest(metrics.registry).decode()
    assert read_report(text).served == 4
    assert read_report("").served is None


def test_a_pod_serving_anyone_is_active_and_one_doing_nothing_is_not() -> None:
    loads = loads_of()
    loads.reports_came({"a": running(0, served=5), "b": running(0, served=2)}, 1.0)
    assert loads.active_at == {}  # the first report: nothing moved yet
    loads.reports_came({"a": running(0, served=6), "b": running(1, served=2)}, 2.0)
    assert loads.active_at == {"a": 2.0, "b": 2.0}  # a served one; b has one in flight
    loads.reports_came({"a": running(0, served=6), "b": None}, 3.0)
    assert loads.active_at == {"a": 2.0, "b": 2.0}
    loads.reports_came({"b": running(0, served=2)}, 4.0)  # a left
    assert loads.active_at == {"b": 2.0}
