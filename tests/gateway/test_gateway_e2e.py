"""`modelkube gateway` on the test control plane: it watches real ModelServices and
EndpointSlices, patches real /scale subresources, and forwards to real runtime processes.

The tests run in order on shared pods (three runtimes cost a model load each): routing,
affinity, scale from zero and back, bad names, the hold timing out, and last a pod killed
mid-request.
"""

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkube_serving.gateway.metrics import (
    GATEWAY_HOLDS,
    GATEWAY_RETRIES,
    GATEWAY_ROUTED,
    GATEWAY_SCALES,
)
from modelkube_serving.gateway.routing import choose, request_key
from modelkube_serving.metrics import REQUESTS_IN_FLIGHT, REQUESTS_TOTAL
from tests.controlplane.cluster import ControlPlane
from tests.gateway.generated import gateway_chat, gateway_text
from tests.gateway.harness import (
    InProcessGateway,
    Pod,
    apply,
    chat,
    conversation_on,
    endpoint,
    endpoint_slice,
    generating_streams,
    metric,
    model_service,
)
from tests.serving import test_fuzz as fuzz
from tests.serving.runtime_process import RuntimeProcess
from tests.waiting import wait_until

IDLE_S = 2


@pytest.fixture(scope="module", params=["uvicorn", "native"])
def front(request: pytest.FixtureRequest) -> str:
    """Every test here on both fronts, each on its own pods and namespace (one test kills a
    pod), in order on one and then on the other."""
    param: str = request.param
    return param


def replicas(cp: ControlPlane, namespace: str, name: str) -> int:
    out = cp.kubectl("get", "-n", namespace, "ms", name, "-o", "jsonpath={.spec.replicas}")
    return int(out.stdout or "1")


@pytest.fixture(scope="module")
def published(control_plane: ControlPlane, namespace: str, pods: dict[str, Pod]) -> dict[str, Pod]:
    """`chat` (two pods, adapter a1) is up; `other` may scale to zero and is at zero, its
    pod not yet published; `ghost` is up but has no ready pod."""
    scaling = {"minReplicas": 0, "maxReplicas": 2, "target": 4, "idleSeconds": IDLE_S}
    apply(
        control_plane,
        model_service(namespace, "chat", ("a1",), replicas=2),
        model_service(namespace, "other", replicas=0, autoscaling=scaling),
        model_service(namespace, "ghost", replicas=1),
        endpoint_slice(namespace, "chat", pods["chat-0"].port),
        endpoint_slice(namespace, "chat", pods["chat-1"].port),
    )
    return pods


@pytest.fixture(scope="module")
def gateway(
    published: dict[str, Pod], start_gateway: Callable[[float], InProcessGateway]
) -> InProcessGateway:
    return start_gateway(60.0)


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def requests_served(pod: Pod) -> float:
    return metric(pod.url, REQUESTS_TOTAL, endpoint="chat")


def test_routes_by_model_and_adapter_and_lists_the_union(
    client: openai.OpenAI, gateway: InProcessGateway
) -> None:
    for model in ("chat", "chat:a1"):
        answer = client.chat.completions.create(model=model, messages=chat("hi"), max_tokens=4)
        assert answer.model == model and answer.choices[0].message.content is not None
    text = client.completions.create(model="chat:a1", prompt="once", max_tokens=3)
    assert text.model == "chat:a1"
    listed = {m.id for m in client.models.list()}
    assert listed == {"chat", "chat:a1", "other", "ghost"}
    assert client.models.retrieve("chat:a1").id == "chat:a1"


def test_a_conversation_stays_on_one_pod(client: openai.OpenAI, published: dict[str, Pod]) -> None:
    chat_pods = [published["chat-0"], published["chat-1"]]
    before = [requests_served(p) for p in chat_pods]
    for turns in range(1, 5):
        client.chat.completions.create(
            model="chat", messages=chat("the same conversation", turns), max_tokens=2
        )
    served = sorted(requests_served(p) - b for p, b in zip(chat_pods, before, strict=True))
    assert served == [0, 4]


def test_affinity_holds_until_the_load_bound_then_spills(
    client: openai.OpenAI, gateway: InProcessGateway, published: dict[str, Pod]
) -> None:
    """Two pods, bound 1.25: the conversation's pod takes two streams (the bound is
    ceil(1.25 * 2 / 2) = 2), the third goes to the other pod."""
    spills = gateway.metric(GATEWAY_ROUTED, decision="spill")
    chat_pods = {endpoint(published[n].port): published[n] for n in ("chat-0", "chat-1")}
    before = {e: requests_served(pod) for e, pod in chat_pods.items()}
    body = chat("a long story please")
    home = choose(request_key({"messages": body}, ""), dict.fromkeys(chat_pods, 0), 1.25).endpoint
    with generating_streams(client, "chat", body, 3):
        assert gateway.metric(GATEWAY_ROUTED, decision="spill") == spills + 1
    wait_until(lambda: not gateway.forwarder.pod_loads.own, 30, "the streams' loads released")
    # Each pod counts a stream as it ends there; the loads while open would miss a stream that
    # finished generating before the others opened (a loaded machine).
    expected = {e: (2 if e == home else 1) for e in chat_pods}
    wait_until(
        lambda: {e: requests_served(p) - before[e] for e, p in chat_pods.items()} == expected,
        30,
        f"streams served as {expected}",
    )


def test_a_pod_loaded_by_other_clients_takes_no_more_than_its_share(
    client: openai.OpenAI, gateway: InProcessGateway, published: dict[str, Pod]
) -> None:
    """Another gateway replica, or a client of the pod's own Service, loads a pod this gateway
    sent nothing: the load the pod reports (its vllm: gauges) bounds it all the same."""
    spills = gateway.metric(GATEWAY_ROUTED, decision="spill")
    chat_pods = {endpoint(published[n].port): published[n] for n in ("chat-0", "chat-1")}
    body = chat("a story told elsewhere")
    home = choose(request_key({"messages": body}, ""), dict.fromkeys(chat_pods, 0), 1.25).endpoint
    direct = openai.OpenAI(base_url=f"{chat_pods[home].url}/v1", api_key="x", max_retries=0)
    with direct, generating_streams(direct, "chat", body, 2):
        wait_until(lambda: gateway.forwarder.pod_loads.of(home) == 2, 10, "the pod's load read")
        before = {e: requests_served(pod) for e, pod in chat_pods.items()}
        client.chat.completions.create(model="chat", messages=body, max_tokens=2)
        assert gateway.metric(GATEWAY_ROUTED, decision="spill") == spills + 1
        served = {e: requests_served(pod) - before[e] for e, pod in chat_pods.items()}
        assert served == {e: (0 if e == home else 1) for e in chat_pods}
    wait_until(lambda: not gateway.forwarder.pod_loads.others, 30, "the pods' loads read idle")


def test_scale_from_zero_holds_requests_until_a_pod_is_ready(
    control_plane: ControlPlane,
    namespace: str,
    client: openai.OpenAI,
    gateway: InProcessGateway,
    published: dict[str, Pod],
) -> None:
    assert replicas(control_plane, namespace, "other") == 0

    def ask(i: int) -> str:
        messages = chat(f"wake {i}")
        return client.chat.completions.create(model="other", messages=messages, max_tokens=3).model

    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(ask, i) for i in range(3)]
        # Plays the Deployment and the EndpointSlice controller: once /scale says 1, the
        # pod (already loaded, to keep the test short) is published as ready.
        wait_until(lambda: replicas(control_plane, namespace, "other") == 1, 30, "/scale to 1")
        wait_until(lambda: gateway.metric(GATEWAY_HOLDS) == 0 and _held(gateway) == 3, 30, "holds")
        assert not any(a.done() for a in answers), "answered before any pod was ready"
        apply(control_plane, endpoint_slice(namespace, "other", published["other-0"].port))
        assert [a.result(60) for a in answers] == ["other"] * 3
    assert gateway.metric(GATEWAY_HOLDS, model="other", outcome="ready") == 3
    assert gateway.metric(GATEWAY_SCALES, model="other", direction="up") == 1


def test_requests_around_the_gateway_keep_a_model_awake(
    control_plane: ControlPlane,
    namespace: str,
    gateway: InProcessGateway,
    published: dict[str, Pod],
) -> None:
    """Clients of the ModelService's own Service (or another gateway replica) keep it from
    scaling to zero: the gateway counts what the pods report, not only its own requests."""
    downs = gateway.metric(GATEWAY_SCALES, model="other", direction="down")
    body = {"model": "other", "messages": chat("still here"), "max_tokens": 1}
    with httpx.Client() as direct:
        until = time.monotonic() + 3 * IDLE_S
        while time.monotonic() < until:
            answer = direct.post(f"{published['other-0'].url}/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert replicas(control_plane, namespace, "other") == 1
            time.sleep(0.3)
    assert gateway.metric(GATEWAY_SCALES, model="other", direction="down") == downs


def _held(gateway: InProcessGateway) -> float:
    return gateway.metric(REQUESTS_IN_FLIGHT, model="gateway")


def test_scale_to_zero_after_idle(
    control_plane: ControlPlane, namespace: str, gateway: InProcessGateway
) -> None:
    wait_until(lambda: replicas(control_plane, namespace, "other") == 0, 30, "/scale to 0")
    assert gateway.metric(GATEWAY_SCALES, model="other", direction="down") >= 1
    assert replicas(control_plane, namespace, "chat") == 2  # no minReplicas 0: left alone


def test_bad_model_names_get_a_404_that_lists_nothing(gateway: InProcessGateway) -> None:
    for model in ("nope", "chat:nope", "chat:", ":a1", "CHAT", "x" * 300, "chat:a1:a1"):
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 404, (model, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        for served in ("other", "ghost", "a1"):
            assert served not in error["message"].replace(model, ""), error
    missing = httpx.post(f"{gateway.url}/v1/chat/completions", json={"messages": []})
    assert missing.status_code == 400 and missing.json()["error"]["param"]
    assert httpx.get(f"{gateway.url}/v1/models/nope").status_code == 404


# Generated bodies through the gateway to the pods: never a 5xx, always OpenAI's error body.


@settings(fuzz.FUZZ, max_examples=max(fuzz.EXAMPLES // 3, 1))
@given(body=gateway_chat, text=gateway_text, raw=st.binary(max_size=200))
def test_generated_bodies_through_the_gateway_never_fail_it(
    gateway: InProcessGateway, body: dict[str, Any], text: dict[str, Any], raw: bytes
) -> None:
    fuzz._check(fuzz._post(f"{gateway.url}/v1/chat/completions", body), chat=True)
    fuzz._check(fuzz._post(f"{gateway.url}/v1/completions", text), chat=False)
    bytes_answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    fuzz._check(bytes_answer, chat=True)


def test_the_gateway_answers_after_the_generated_bodies(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="chat", messages=chat("hi"), max_tokens=2)
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_the_hold_times_out_with_503_and_retry_after(
    start_gateway: Callable[[float], InProcessGateway], published: dict[str, Pod]
) -> None:
    quick = start_gateway(0.5)
    answer = httpx.post(
        f"{quick.url}/v1/chat/completions",
        json={"model": "ghost", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "model_not_ready"
    assert int(answer.headers["retry-after"]) >= 1
    assert quick.metric(GATEWAY_HOLDS, model="ghost", outcome="timeout") == 1


def _send_and_leave(url: str, body: dict[str, Any]) -> socket.socket:
    """A client that sends a request and will leave when the socket is closed."""
    payload = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def test_a_client_leaving_a_held_request_frees_it_and_nothing_follows(
    control_plane: ControlPlane,
    namespace: str,
    start_gateway: Callable[[float], InProcessGateway],
    published: dict[str, Pod],
) -> None:
    held = start_gateway(60.0)
    hello = [{"role": "user", "content": "hi"}]
    leaving = [
        _send_and_leave(held.url, {"model": "ghost", "messages": hello, "stream": stream})
        for stream in (False, True)
    ]
    wait_until(lambda: _held(held) == 2, 30, "both requests held")
    for sock in leaving:
        sock.close()
    wait_until(lambda: _held(held) == 0, 30, "the held requests freed")
    assert held.metric(GATEWAY_HOLDS, model="ghost", outcome="gone") == 2
    # `ghost` gets a ready pod (one serving another model: only the routing is looked at).
    apply(control_plane, endpoint_slice(namespace, "ghost", published["other-0"].port))
    try:
        answer = httpx.post(
            f"{held.url}/v1/chat/completions", json={"model": "ghost", "messages": hello}
        )
        assert answer.status_code == 404, answer.text  # the pod's: routed, it serves `other`
        # Only that request was routed: the two that left were never sent on.
        assert held.metric(GATEWAY_ROUTED, model="ghost") == 1
    finally:
        control_plane.kubectl(
            "delete", "-n", namespace, "endpointslice", f"ghost-{published['other-0'].port}"
        )


def test_a_stopping_gateway_answers_held_requests_503_and_lets_streams_finish(
    start_gateway: Callable[[float], InProcessGateway], published: dict[str, Pod]
) -> None:
    stopping = start_gateway(60.0)
    held_body = {"model": "ghost", "messages": [{"role": "user", "content": "hi"}]}
    with (
        openai.OpenAI(base_url=f"{stopping.url}/v1", api_key="-", max_retries=0) as sdk,
        ThreadPoolExecutor(1) as pool,
    ):
        stream = sdk.chat.completions.create(
            model="chat",
            messages=chat("a long story please"),
            max_tokens=1900,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)
        held = pool.submit(
            httpx.post, f"{stopping.url}/v1/chat/completions", json=held_body, timeout=50
        )
        wait_until(lambda: _held(stopping) == 2, 30, "the stream and the held request")
        stopping.stop(wait=False)
        answer = held.result(50)
        # Answered once the shutdown began, while the stream still streamed.
        assert stopping.forwarder.pod_loads.own, "the stream ended before the shutdown: too short"
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "model_not_ready" and "shutting down" in error["message"]
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["connection"] == "close"
        last = list(chunks)[-1]
    assert last.choices[0].finish_reason == "length"
    registry = stopping.forwarder.metrics.runtime.registry
    assert registry.get_sample_value(GATEWAY_HOLDS, {"model": "ghost", "outcome": "shutdown"}) == 1


def test_a_client_cannot_say_what_the_front_tried(
    client: openai.OpenAI, gateway: InProcessGateway, published: dict[str, Pod]
) -> None:
    """The native front drops a client's x-modelkube-tried; uvicorn's app, serving alone,
    does not read it: believed, a `timeout` would be a 504 and the others a counted retry."""
    pod = endpoint(published["chat-0"].port)
    for reason in ("timeout", "refused", "gone", "draining"):
        answer = client.chat.completions.create(
            model="chat",
            messages=chat("hi"),
            max_tokens=2,
            extra_headers={"x-modelkube-tried": f"{pod} {reason}"},
        )
        assert answer.model == "chat"
    assert gateway.metric(GATEWAY_RETRIES, model="chat") == 0


def test_a_pod_killed_mid_request_is_retried_on_the_other(
    client: openai.OpenAI, gateway: InProcessGateway, published: dict[str, Pod]
) -> None:
    doomed = published["chat-0"]  # the process: it can be killed
    assert isinstance(doomed, RuntimeProcess) and doomed.proc is not None
    pods = [endpoint(published[n].port) for n in ("chat-0", "chat-1")]
    body = conversation_on(endpoint(doomed.port), pods)

    with ThreadPoolExecutor(1) as pool:
        ask = pool.submit(
            client.chat.completions.create,
            model="chat",
            messages=body,
            max_tokens=300,  # long enough to be killed mid-way
            extra_body={"ignore_eos": True},
        )
        wait_until(
            lambda: gateway.forwarder.pod_loads.own.get(endpoint(doomed.port)), 30, "the request"
        )
        doomed.proc.send_signal(signal.SIGKILL)  # the pod vanishes, its endpoint still listed
        answer = ask.result(120)
    assert answer.choices[0].finish_reason == "length"
    assert gateway.metric(GATEWAY_RETRIES, model="chat", reason="gone") == 1
    # The dead pod is still in its EndpointSlice: the next request it gets is refused, then
    # retried on the live pod.
    again = client.chat.completions.create(model="chat", messages=body, max_tokens=2)
    assert again.model == "chat"
    assert gateway.metric(GATEWAY_RETRIES, model="chat", reason="refused") == 1
    streamed = client.chat.completions.create(
        model="chat", messages=body, max_tokens=2, stream=True
    )
    assert {chunk.model for chunk in streamed} == {"chat"}
    assert gateway.metric(GATEWAY_RETRIES, model="chat", reason="refused") == 2
