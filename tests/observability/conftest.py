import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import yaml

from tests.observability.prometheus import Prometheus, Target
from tests.observability.queries import rule_groups
from tests.serving.runtime_process import RuntimeProcess
from tests.waiting import wait_until

# The labels Kubernetes service discovery gives a ModelService "tiny"'s pod in namespace obs-test.
NAMESPACE = "obs-test"
POD = "tiny-0"
MODEL = "tiny"
MAX_CONCURRENT = 4
MAX_QUEUED = 16
CLIENTS = 6  # more than MAX_CONCURRENT, so some requests queue
TRAFFIC_S = 5.0


@dataclass(frozen=True)
class Traffic:
    start: float
    end: float
    requests: int


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    args = ["--model", "builtin://tiny", "--max-concurrent-requests", str(MAX_CONCURRENT)]
    args += ["--max-queued-requests", str(MAX_QUEUED)]
    proc = RuntimeProcess(args, tmp_path_factory.mktemp("runtime") / "runtime.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def prometheus(
    runtime: RuntimeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    labels = {"namespace": NAMESPACE, "pod": POD, "service": MODEL}
    target = Target("runtime", f"127.0.0.1:{runtime.port}", labels)
    prom = Prometheus(workdir, [target], [rules]).start()
    try:
        prom.wait_for('up{job="runtime"} == 1')
        yield prom
    finally:
        prom.stop()


def _client_loop(client: openai.OpenAI, worker: int, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me a story about the number {worker}."}],
            max_tokens=48,
            stream=True,
        )
        for _ in stream:
            pass
        done += 1
    return done


@pytest.fixture(scope="module")
def traffic(runtime: RuntimeProcess, prometheus: Prometheus) -> Traffic:
    """Real requests through the openai client while Prometheus scrapes every second: streams
    from more clients than the runtime decodes at once, and one unknown model (a 404)."""
    start = time.time()
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
        deadline = time.monotonic() + TRAFFIC_S
        with ThreadPoolExecutor(CLIENTS) as pool:
            counts = pool.map(lambda i: _client_loop(client, i, deadline), range(CLIENTS))
            requests = sum(counts)
    # Every request is in a scrape (the 404 too) before the window closes.
    total = f'sum(modelkube_requests_total{{namespace="{NAMESPACE}"}})'
    wait_until(
        lambda: _value(prometheus.query(total)) == requests + 1, 15, f"{requests + 1} in {total}"
    )
    return Traffic(start, time.time(), requests)


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None
