"""`modelkube gateway --front native` on the test control plane: the same gateway with the Rust
core's HTTP server on its port. What it can route at once it relays from the pod itself (the
router's count says so); holds, refusals, /v1/models and retries go through the app behind it,
and come back through it as they would from uvicorn.

test_gateway_e2e runs all of its scenarios on this front too (holds, scale from zero, retries
of a killed pod and their metrics); this module holds what only the front has: its router's
own path, generated requests through both paths, a stream's counts held in the front, keys on
both paths, its shutdown and its port.
"""

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkube_serving.gateway.front import FrontRouter
from modelkube_serving.metrics import REQUESTS_IN_FLIGHT, REQUESTS_TOTAL
from tests.controlplane.cluster import ControlPlane
from tests.gateway.generated import gateway_chat, gateway_text
from tests.gateway.harness import (
    InProcessGateway,
    Pod,
    apply,
    chat,
    endpoint_slice,
    model_service,
)
from tests.serving import test_fuzz as fuzz
from tests.waiting import wait_until

Start = Callable[..., InProcessGateway]


@pytest.fixture(scope="module")
def published(control_plane: ControlPlane, namespace: str, pods: dict[str, Pod]) -> dict[str, Pod]:
    """`chat` (two pods, adapter a1) is up; `ghost` is up but has no ready pod."""
    apply(
        control_plane,
        model_service(namespace, "chat", ("a1",), replicas=2),
        model_service(namespace, "ghost", replicas=1),
        endpoint_slice(namespace, "chat", pods["chat-0"].port),
        endpoint_slice(namespace, "chat", pods["chat-1"].port),
    )
    return pods


@pytest.fixture(scope="module")
def gateway(published: dict[str, Pod], start_gateway: Start) -> InProcessGateway:
    return start_gateway(60.0, front="native")


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def router(gateway: InProcessGateway) -> FrontRouter:
    server: Any = gateway.server
    found: FrontRouter = server.router
    return found


def test_routes_by_model_and_adapter_from_the_front_and_the_rest_through_the_app(
    client: openai.OpenAI, gateway: InProcessGateway
) -> None:
    for model in ("chat", "chat:a1"):
        answer = client.chat.completions.create(model=model, messages=chat("hi"), max_tokens=4)
        assert answer.model == model and answer.choices[0].message.content is not None
    text = client.completions.create(model="chat:a1", prompt="once", max_tokens=3)
    assert text.model == "chat:a1"
    assert router(gateway).routed == 3
    assert {m.id for m in client.models.list()} == {"chat", "chat:a1", "ghost"}
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=chat("hi"), max_tokens=1)
    assert "chat" not in str(unknown.value.body)  # lists nothing
    assert router(gateway).routed == 3
    wait_until(
        lambda: gateway.metric(REQUESTS_TOTAL, model="chat:a1", status="200") == 2,
        5,
        "the front's requests counted",
    )


# Generated bodies, paths, methods and keys through the front: what it routes and what it
# leaves to the app; never a 5xx, always OpenAI's error body, and the gateway goes on.
@settings(fuzz.FUZZ, max_examples=max(fuzz.EXAMPLES // 3, 1))
@given(
    body=gateway_chat,
    text=gateway_text,
    raw=st.binary(max_size=200),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.from_regex(r"/[A-Za-z0-9/_.:%-]{0,40}", fullmatch=True),
    # What a client can send: printable ASCII, no space at either end (httpx refuses those).
    authorization=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
        str.strip
    ),
    # A client forging the front's own header: dropped, whatever it says.
    tried=st.one_of(
        st.sampled_from(["10.9.9.9:1 refused", "127.0.0.1:1 gone", "x timeout", "y draining"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip),
    ),
)
def test_generated_requests_through_the_front_never_fail_it(
    gateway: InProcessGateway,
    body: dict[str, Any],
    text: dict[str, Any],
    raw: bytes,
    method: str,
    path: str,
    authorization: str,
    tried: str,
) -> None:
    fuzz._check(fuzz._post(f"{gateway.url}/v1/chat/completions", body), chat=True)
    fuzz._check(fuzz._post(f"{gateway.url}/v1/completions", text), chat=False)
    headers = {
        "content-type": "application/json",
        "authorization": authorization,
        "x-modelkube-tried": tried,
    }
    url = f"{gateway.url}/v1/chat/completions"
    fuzz._check(httpx.post(url, content=raw, headers=headers, timeout=30), chat=True)
    anything = httpx.request(method, f"{gateway.url}{path}", content=raw, timeout=30)
    assert anything.status_code < 500, (method, path, anything.text)


def test_a_stream_counts_on_its_pod_and_in_admission_until_it_ends(
    client: openai.OpenAI, gateway: InProcessGateway
) -> None:
    stream = client.chat.completions.create(
        model="chat",
        messages=chat("a story"),
        max_tokens=1500,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    assert sum(gateway.forwarder.pod_loads.own.values()) == 1
    assert gateway.metric(REQUESTS_IN_FLIGHT, model="gateway") == 1
    stream.close()  # the client leaves mid-stream
    wait_until(
        lambda: sum(gateway.forwarder.pod_loads.own.values()) == 0, 10, "the pod's load back"
    )
    wait_until(
        lambda: gateway.metric(REQUESTS_IN_FLIGHT, model="gateway") == 0, 10, "the slot back"
    )
    whole = list(
        client.chat.completions.create(
            model="chat", messages=chat("short"), max_tokens=3, stream=True
        )
    )
    assert whole[-1].choices[0].finish_reason is not None


def test_keys_are_checked_on_both_paths(start_gateway: Start, published: dict[str, Pod]) -> None:
    keyed = start_gateway(60.0, front="native", api_keys=(b"k1",))
    body = {"model": "chat", "messages": chat("hi"), "max_tokens": 2}
    refused = httpx.post(f"{keyed.url}/v1/chat/completions", json=body)
    assert refused.status_code == 401 and refused.json()["error"]["type"]
    wrong = httpx.post(
        f"{keyed.url}/v1/chat/completions", json=body, headers={"authorization": "Bearer k2"}
    )
    assert wrong.status_code == 401
    assert router(keyed).routed == 0
    with openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="k1", max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="chat", messages=chat("hi"), max_tokens=2)
        assert answer.model == "chat"
        assert {m.id for m in sdk.models.list()} >= {"chat"}
    assert router(keyed).routed == 1


def test_a_stopping_gateway_lets_its_streams_finish_and_takes_no_new_connection(
    start_gateway: Start, published: dict[str, Pod]
) -> None:
    stopping = start_gateway(60.0, front="native")
    with openai.OpenAI(base_url=f"{stopping.url}/v1", api_key="-", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="chat",
            messages=chat("a long story please"),
            max_tokens=1500,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)
        stopping.stop(wait=False)
        wait_until(lambda: _refused(stopping.url), 10, "the front closed")
        assert stopping.forwarder.pod_loads.own, "the stream ended before the shutdown"
        last = list(chunks)[-1]
    assert last.choices[0].finish_reason == "length"
    assert stopping.thread is not None
    stopping.thread.join(30)
    assert not stopping.thread.is_alive()


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_a_port_in_use_stops_the_gateway(
    control_plane: ControlPlane, namespace: str, published: dict[str, Pod]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        gateway = InProcessGateway(control_plane, namespace, 60.0, front="native", port=port)
        with pytest.raises(RuntimeError, match="the gateway stopped"):
            gateway.start()
    server: Any = gateway.server
    assert server.front_failed and server.front is None
