"""A gateway in the test process (uvicorn on a thread, on a loopback port) against the test
control plane, and the objects a test publishes for it: ModelServices and the EndpointSlices
a Service's controller would write for ready pods (kwok's pods run nothing, so the endpoints
are runtime processes on loopback)."""

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import openai
import uvicorn
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials
from prometheus_client.parser import text_string_to_metric_families

from modelkube_serving.gateway.app import GatewayConfig, create_gateway
from modelkube_serving.gateway.command import server_options
from modelkube_serving.gateway.forward import Forwarder
from modelkube_serving.gateway.front import FrontedServer
from modelkube_serving.gateway.routing import DEFAULT_BOUND_FACTOR, choose, request_key
from modelkube_serving.gateway.server import GatewayServer
from modelkube_serving.services.admission import AdmissionLimits
from tests.controlplane.cluster import ControlPlane
from tests.serving.inprocess import InProcessRuntime
from tests.serving.runtime_process import RuntimeProcess, free_port
from tests.waiting import wait_http_ok

Pod = RuntimeProcess | InProcessRuntime  # a runtime playing a pod


@dataclass
class InProcessGateway:
    cp: ControlPlane
    namespace: str
    hold_timeout_s: float
    drain_s: int = 60
    front: str = "uvicorn"  # or "native": `modelkube gateway --front native`
    api_keys: tuple[bytes, ...] = ()
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def forwarder(self) -> Forwarder:
        assert self.server is not None
        app: Any = self.server.config.app
        found: Forwarder = app.state.forwarder
        return found

    def start(self) -> "InProcessGateway":
        config = GatewayConfig(
            namespace=self.namespace,
            limits=AdmissionLimits(max_running=64, max_queued=64),
            hold_timeout_s=self.hold_timeout_s,
            api_keys=self.api_keys,
        )
        kube = Kube(load_credentials(str(self.cp.admin_kubeconfig)), "modelkube-gateway")
        app = create_gateway(config, kube)
        options = server_options("warning", self.drain_s)
        # The server `modelkube gateway` runs, with its shutdown: `stop` is its SIGTERM.
        if self.front == "native":
            self.server = FrontedServer(
                uvicorn.Config(app, **options),
                app.state.scaler.stop_holding,
                "127.0.0.1",
                self.port,
                config.response_timeout_s + config.hold_timeout_s,
            )
        else:
            self.server = GatewayServer(
                uvicorn.Config(app, host="127.0.0.1", port=self.port, loop="asyncio", **options),
                app.state.scaler.stop_holding,
            )
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{self.port}")
        self.thread.start()
        wait_http_ok(f"{self.url}/healthz", self._stopped, lambda: "", 30)
        return self

    def _stopped(self) -> str | None:
        assert self.thread is not None
        return None if self.thread.is_alive() else "the gateway stopped"

    def stop(self, wait: bool = True) -> None:
        """What uvicorn's SIGTERM handler does: its graceful shutdown begins."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            if wait:
                self.thread.join(15)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.url, name, **labels)


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` on `url`/metrics whose labels include `labels`."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def apply(cp: ControlPlane, *objects: dict[str, Any]) -> None:
    stdin = "\n---\n".join(map(json.dumps, objects))
    done = cp.kubectl("apply", "--server-side", "-f", "-", stdin=stdin, check=False)
    assert done.returncode == 0, done.stderr


def chat(opening: str, turns: int = 1) -> list[Any]:
    """A conversation's messages up to its `turns`-th user turn."""
    messages: list[Any] = [{"role": "system", "content": "You are terse."}]
    for turn in range(turns):
        messages.append({"role": "user", "content": opening if turn == 0 else f"and {turn}?"})
        if turn < turns - 1:
            messages.append({"role": "assistant", "content": "ok"})
    return messages


def conversation_on(pod: str, endpoints: list[str]) -> list[Any]:
    """A conversation whose own pod (by prefix affinity, nothing else in flight) is `pod`."""
    for i in range(100):
        body = chat(f"doomed {i}")
        loads = dict.fromkeys(endpoints, 0)
        if choose(request_key({"messages": body}, ""), loads, DEFAULT_BOUND_FACTOR).endpoint == pod:
            return body
    raise AssertionError(f"no conversation of 100 lands on {pod}")


@contextmanager
def generating_streams(
    client: openai.OpenAI, model: str, messages: list[Any], count: int
) -> Iterator[None]:
    """`count` long streams of one conversation, each past its first chunk (its pod is generating,
    so its load counts) until the block ends, then closed."""
    streams = []
    try:
        for _ in range(count):
            stream = client.chat.completions.create(
                model=model,
                messages=messages,
                max_tokens=2000,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            next(iter(stream))
            streams.append(stream)
        yield
    finally:
        for stream in streams:
            stream.close()


def model_service(
    namespace: str, name: str, adapters: tuple[str, ...] = (), **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "adapters": [{"name": a, "uri": f"pvc://adapters/{a}"} for a in adapters],
            **spec,
        },
    }


@cache
def host_address() -> str:
    """This machine's first non-loopback IPv4 address: an EndpointSlice refuses 127.0.0.0/8,
    so the runtimes listen on every address and are published on this one."""
    words = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    found = [w for w in words if w.count(".") == 3 and not w.startswith("127.")]
    assert found, f"no non-loopback IPv4 address for the test endpoints: {words}"
    return found[0]


def endpoint(port: int) -> str:
    return f"{host_address()}:{port}"


def endpoint_slice(namespace: str, service: str, port: int) -> dict[str, Any]:
    """A slice of one ready endpoint: what the EndpointSlice controller writes for a ready
    pod, here pointing at a runtime process (a slice has one port, so one per runtime)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{port}",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "tests.modelkube.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [host_address()], "conditions": {"ready": True}}],
    }
