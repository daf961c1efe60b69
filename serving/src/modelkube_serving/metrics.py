"""Every metric the runtime exports. Dashboards, alerts and the HPA use these names."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "modelkube"

REQUESTS_TOTAL = f"{PREFIX}_requests_total"
REQUESTS_IN_FLIGHT = f"{PREFIX}_requests_in_flight"
REQUESTS_QUEUED = f"{PREFIX}_requests_queued"
TIME_TO_FIRST_TOKEN = f"{PREFIX}_time_to_first_token_seconds"
TIME_PER_OUTPUT_TOKEN = f"{PREFIX}_time_per_output_token_seconds"
REQUEST_DURATION = f"{PREFIX}_request_duration_seconds"
PROMPT_TOKENS = f"{PREFIX}_prompt_tokens_total"
GENERATION_TOKENS = f"{PREFIX}_generation_tokens_total"
PREFIX_CACHE_HITS = f"{PREFIX}_prefix_cache_hits_total"
PREFIX_CACHE_HIT_TOKENS = f"{PREFIX}_prefix_cache_hit_tokens_total"
BATCH_SIZE = f"{PREFIX}_batch_size"
BLAS_INFO = f"{PREFIX}_blas_info"
ENGINE_INFO = f"{PREFIX}_engine_info"
ADAPTERS = f"{PREFIX}_adapters"
MAX_CONCURRENT_REQUESTS = f"{PREFIX}_max_concurrent_requests"
MAX_QUEUED_REQUESTS = f"{PREFIX}_max_queued_requests"
# Proxy mode (--upstream-provider): the calls to the hosted provider behind the API.
UPSTREAM_REQUESTS = f"{PREFIX}_upstream_requests_total"
UPSTREAM_RETRIES = f"{PREFIX}_upstream_retries_total"
UPSTREAM_CIRCUIT_OPENS = f"{PREFIX}_upstream_circuit_opens_total"
UPSTREAM_CIRCUIT_OPEN = f"{PREFIX}_upstream_circuit_open"
# The model-server protocol: vLLM's names, which the Gateway API Inference Extension's endpoint
# picker and llm-d read to route between replicas (--vllm-metrics, on by default).
VLLM_REQUESTS_WAITING = "vllm:num_requests_waiting"
VLLM_REQUESTS_RUNNING = "vllm:num_requests_running"
VLLM_KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
VLLM_LORA_REQUESTS_INFO = "vllm:lora_requests_info"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class RuntimeMetrics:
    """The runtime's collectors, on a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            REQUESTS_TOTAL,
            "Requests answered, by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            REQUESTS_IN_FLIGHT,
            "Requests admitted to the engine and not finished.",
            ["model"],
            registry=r,
        )
        self.queued = Gauge(
            REQUESTS_QUEUED, "Requests waiting for a slot in the batch.", ["model"], registry=r
        )
        # The limits in_flight and queued run up against, so alerts can divide by them.
        self.max_concurrent = Gauge(
            MAX_CONCURRENT_REQUESTS,
            "Requests decoded together at most (--max-concurrent-requests).",
            ["model"],
            registry=r,
        )
        self.max_queued = Gauge(
            MAX_QUEUED_REQUESTS,
            "Requests waiting at most before a 429 (--max-queued-requests).",
            ["model"],
            registry=r,
        )
        self.ttft = Histogram(
            TIME_TO_FIRST_TOKEN,
            "Seconds from request arrival to its first generated token.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            TIME_PER_OUTPUT_TOKEN,
            "Seconds per generated token after the first.",
            ["model"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            REQUEST_DURATION,
            "End-to-end seconds of a completion request.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            PROMPT_TOKENS, "Prompt tokens received.", ["model"], registry=r
        )
        self.generation_tokens = Counter(
            GENERATION_TOKENS, "Tokens generated.", ["model"], registry=r
        )
        self.cache_hits = Counter(
            PREFIX_CACHE_HITS, "Requests that reused a cached prompt prefix.", ["model"], registry=r
        )
        self.cache_hit_tokens = Counter(
            PREFIX_CACHE_HIT_TOKENS,
            "Prompt tokens served from the prefix cache.",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Sequences decoded together per engine step.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.adapters = Gauge(
            ADAPTERS,
            "Adapters asked for, by state: ready, loading, pending (files not there yet), failed.",
            ["state"],
            registry=r,
        )
        self.upstream_requests = Counter(
            UPSTREAM_REQUESTS,
            "Calls to the upstream provider, by outcome: its HTTP status after retries, or "
            "unreachable, timeout, circuit_open, cut (a stream ended early).",
            ["provider", "outcome"],
            registry=r,
        )
        self.engine = Gauge(
            ENGINE_INFO,
            "The engine serving the model: mlx or llamacpp (value is always 1).",
            ["engine"],
            registry=r,
        )
        self.blas = Gauge(
            BLAS_INFO,
            "The BLAS library this process uses (value is always 1).",
            ["library"],
            registry=r,
        )


class UpstreamCollector(Collector):
    """The native client's own counters, read at scrape time."""

    def __init__(
        self, provider: str, counters: Callable[[], tuple[int, int]], state: Callable[[], str]
    ) -> None:
        self.provider = provider
        self.counters = counters
        self.state = state

    def collect(self) -> Iterator[Metric]:
        retries, opens = self.counters()
        labels = [self.provider]
        family = CounterMetricFamily(
            UPSTREAM_RETRIES,
            "Calls to the provider retried (429, 5xx, no answer).",
            labels=["provider"],
        )
        family.add_metric(labels, retries)
        yield family
        family = CounterMetricFamily(
            UPSTREAM_CIRCUIT_OPENS,
            "Times the circuit breaker opened after failures in a row.",
            labels=["provider"],
        )
        family.add_metric(labels, opens)
        yield family
        gauge = GaugeMetricFamily(
            UPSTREAM_CIRCUIT_OPEN,
            "1 while the breaker is open and holds calls back, else 0 (closed, or letting a "
            "probe through after its cooldown).",
            labels=["provider"],
        )
        gauge.add_metric(labels, 1 if self.state() == "open" else 0)
        yield gauge


@dataclass(frozen=True)
class ServerLoad:
    """What an endpoint picker weighs a replica by, read at scrape time."""

    running: int
    waiting: int
    cache_usage: float  # the prefix cache's bytes over its budget, 0..1
    running_adapters: tuple[str, ...] = ()
    waiting_adapters: tuple[str, ...] = ()
    max_adapters: int = 0


class ModelServerCollector(Collector):
    """The runtime's load under vLLM's metric names and labels (`model_name`)."""

    def __init__(self, model: str, load: Callable[[], ServerLoad]) -> None:
        self.model = model
        self.load = load

    def collect(self) -> Iterator[Metric]:
        load = self.load()
        labels = ["model_name"]
        for name, text, value in (
            (VLLM_REQUESTS_RUNNING, "Requests in the batch.", load.running),
            (VLLM_REQUESTS_WAITING, "Requests waiting for a slot.", load.waiting),
            (VLLM_KV_CACHE_USAGE, "Prefix cache use of its budget, 0 to 1.", load.cache_usage),
        ):
            gauge = GaugeMetricFamily(name, text, labels=labels)
            gauge.add_metric([self.model], value)
            yield gauge
        info = GaugeMetricFamily(
            VLLM_LORA_REQUESTS_INFO,
            "Adapters with running and waiting requests (the value is the time, as in vLLM).",
            labels=["running_lora_adapters", "waiting_lora_adapters", "max_lora"],
        )
        info.add_metric(
            [
                ",".join(load.running_adapters),
                ",".join(load.waiting_adapters),
                str(load.max_adapters),
            ],
            time.time(),
        )
        yield info
