"""A real Prometheus scraping a proxy-mode runtime whose provider (FaultUpstream) fails on cue:
the serving dashboard's "Upstream (proxy mode)" row draws the calls, retries and breaker, and
the upstream alerts see them with the labels their annotations name."""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from tests.fault_upstream import Fault, FaultUpstream
from tests.observability.prometheus import Prometheus, Target
from tests.observability.queries import dashboards, fill, panel_queries, rule_groups
from tests.serving.runtime_process import RuntimeProcess

NAMESPACE = "obs-proxy"
SERVICE = "hosted"  # the ModelService: its Service and its served model name
POD = "hosted-0"
ROW = (
    "Upstream calls by outcome",
    "Upstream retries",
    "Circuit breaker open",
    "Circuit breaker openings",
)
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Window:
    start: float
    end: float


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    fault = FaultUpstream().start()
    yield fault
    fault.stop()


@pytest.fixture(scope="module")
def proxy(upstream: FaultUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two attempts a call, a breaker that opens on the fourth failure in a row and stays open
    (its gauge 1) until the module ends."""
    args = ["--upstream-provider", "custom", "--upstream-base-url", upstream.url]
    args += ["--upstream-model", "tiny", "--served-model-name", SERVICE]
    args += ["--upstream-retries", "1", "--upstream-breaker-failures", "4"]
    args += ["--upstream-breaker-cooldown", "120"]
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    proc = RuntimeProcess(args, log, env={"MODELKUBE_UPSTREAM_API_KEY": "sk-x"}).start(timeout=60)
    yield proc.url
    proc.stop()


@pytest.fixture(scope="module")
def prometheus(proxy: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    labels = {"namespace": NAMESPACE, "pod": POD, "service": SERVICE}
    target = Target("proxy", proxy.removeprefix("http://"), labels)
    prom = Prometheus(workdir, [target], [rules]).start()
    try:
        prom.wait_for('up{job="proxy"} == 1')
        yield prom
    finally:
        prom.stop()


def _call(
    client: openai.OpenAI, *faults: Fault, upstream: FaultUpstream, prometheus: Prometheus
) -> None:
    upstream.then(*faults)
    try:
        client.chat.completions.create(model=SERVICE, messages=MESSAGES, max_tokens=4)
    finally:
        # Past a scrape: Prometheus sees a counter's increase only once it has a sample before.
        # A scrape's timestamp is its start, so this one read the counters after the call.
        prometheus.wait_for(f'timestamp(up{{job="proxy"}}) > {time.time()}')


@pytest.fixture(scope="module")
def traffic(upstream: FaultUpstream, proxy: str, prometheus: Prometheus) -> Window:
    """An answer, a 503 retried away, two calls failing 500 twice (the fourth failure opens the
    breaker), then a call the breaker holds back."""
    start = time.time()
    with openai.OpenAI(base_url=f"{proxy}/v1", api_key="unused", max_retries=0) as client:
        _call(client, upstream=upstream, prometheus=prometheus)
        _call(client, Fault(503), upstream=upstream, prometheus=prometheus)
        for faults in ([Fault(500)] * 2, [Fault(500)] * 2, []):
            with pytest.raises(openai.APIStatusError):
                _call(client, *faults, upstream=upstream, prometheus=prometheus)
    prometheus.wait_for(f'modelkube_upstream_circuit_open{{service="{SERVICE}"}} == 1')
    return Window(start, time.time())


def test_the_upstream_row_draws_calls_retries_and_the_open_breaker(
    prometheus: Prometheus, traffic: Window
) -> None:
    values = {"namespace": NAMESPACE, "model": SERVICE, "__rate_interval": "4s"}
    serving = dashboards()["modelkube-serving.json"]
    for panel in ROW:
        (query,) = [q for q in panel_queries(serving) if q.panel == panel]
        data = prometheus.query_range(fill(query.expr, values), traffic.start, traffic.end)
        assert max((v for v in data if not math.isnan(v)), default=0) > 0, panel
    outcomes = {
        s["metric"]["outcome"] for s in prometheus.query("modelkube_upstream_requests_total")
    }
    assert {"200", "500", "circuit_open"} <= outcomes
    (opens,) = prometheus.query("modelkube_upstream_circuit_opens_total")
    assert float(opens["value"][1]) == 1


def test_the_upstream_alerts_go_pending_with_the_labels_they_name(
    prometheus: Prometheus, traffic: Window
) -> None:
    """Both alerts' `for` is minutes, so pending is as far as they get here."""
    expr = 'ALERTS{alertname=~"ModelKubeUpstream.*", alertstate="pending"}'
    deadline = time.monotonic() + 10
    while len(pending := prometheus.query(expr)) < 2:
        assert time.monotonic() < deadline, pending
        time.sleep(0.25)
    for alert in pending:
        labels = alert["metric"]
        assert (labels["namespace"], labels["service"]) == (NAMESPACE, SERVICE), labels
        assert labels["provider"] == "custom"
