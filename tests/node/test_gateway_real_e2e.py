"""`modelkube gateway` as the chart deploys it, on the real node, in front of ModelServices
served by real pods: the scenarios of tests/gateway/test_gateway_e2e.py, where the endpoints
are runtime processes, here with real pods behind real EndpointSlices, readiness probes that
gate on the model being loaded, and the official `openai` client talking to the gateway's
ClusterIP (kube-proxy).

One release and one set of ModelServices for the whole module, its tests run in order:
`chat` (2 replicas, adapter `a1` on a hostPath PersistentVolume), `other` (scales to zero, at
zero), and `ghost` (scales to zero, its pod can never be scheduled). Timings are printed,
never asserted.
"""

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from modelkube_operator.builders.common import restricted_pod_context

from modelkube_serving.gateway.catalog import ready_endpoints
from modelkube_serving.gateway.metrics import (
    GATEWAY_HOLDS,
    GATEWAY_RETRIES,
    GATEWAY_ROUTED,
    GATEWAY_SCALES,
)
from modelkube_serving.gateway.routing import choose, request_key
from modelkube_serving.metrics import REQUESTS_IN_FLIGHT, REQUESTS_TOTAL
from modelkube_serving.models.builtin import ensure_builtin
from tests.controlplane.cluster import ControlPlane
from tests.gateway.harness import (
    chat,
    conversation_on,
    generating_streams,
    metric,
    model_service,
)
from tests.node.gateway_release import SERVING, SMALL, SYSTEM, Release, install, pods, ready
from tests.node.node import NODE_NAME, RealNode
from tests.node.startup import phases, table
from tests.node.streaming import StreamingLoad
from tests.operator.harness import adapters_claim, condition, get_json
from tests.serving.adapter_files import write_adapter
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1500)]

IDLE_S = 10  # `other`'s idleSeconds
HOLD_S = 300
BOUND = 1.25  # the chart's gateway.loadBound
RUNTIME_PORT = 8000


@dataclass
class Served:
    cp: ControlPlane
    node: RealNode
    release: Release
    client: openai.OpenAI

    @property
    def url(self) -> str:
        return self.release.url

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.url, name, **labels)


@pytest.fixture(scope="module")
def adapter_volume(node: RealNode) -> Path:
    """A hostPath volume holding the LoRA adapter `a1` of the built-in model, owned by the pods'
    non-root user (hostPath volumes get no fsGroup)."""
    path = node.workdir / "volumes" / "gateway-adapters"
    write_adapter(ensure_builtin("tiny"), path / "a1", "lora", seed=1)
    uid = restricted_pod_context()["runAsUser"]
    for found in (path, *path.rglob("*")):
        os.chown(found, uid, uid)
    return path


def _modelservices() -> list[dict[str, Any]]:
    scaling = {"minReplicas": 0, "maxReplicas": 1, "target": 4}
    runtime = {"resources": SMALL}
    # More CPU than the node has: its pod stays Pending, so a hold for it can only time out.
    never = {"resources": {"requests": {"cpu": "64", "memory": "512Mi"}}}
    return [
        model_service(SERVING, "chat", ("a1",), replicas=2, runtime=runtime),
        model_service(
            SERVING,
            "other",
            replicas=0,
            autoscaling={**scaling, "idleSeconds": IDLE_S},
            runtime=runtime,
        ),
        model_service(SERVING, "ghost", replicas=0, autoscaling=scaling, runtime=never),
    ]


@pytest.fixture(scope="module")
def served(
    node_control_plane: ControlPlane,
    node: RealNode,
    operator_image: str,
    runtime_image: str,
    adapter_volume: Path,
) -> Iterator[Served]:
    cp = node_control_plane
    started = time.monotonic()
    # A hold long enough for a cold start on a loaded 2-core machine (the default is 120 s).
    # On uvicorn until the upgrade below moves the running release onto the native front (the
    # default) under load.
    release = install(cp, node, f"gateway.holdTimeoutSeconds={HOLD_S}", "gateway.front=uvicorn")
    docs = [*adapters_claim(SERVING, str(adapter_volume)), *_modelservices()]
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    client = openai.OpenAI(base_url=f"{release.url}/v1", api_key="unused", max_retries=0)
    try:
        wait_until(lambda: _ready_replicas(cp, "chat") == 2, 600, "chat's 2 pods Ready")
    except TimeoutError:
        _dump(cp, node)
        raise
    print(f"release and chat's pods Ready {time.monotonic() - started:.1f}s after install")
    with client:
        yield Served(cp, node, release, client)
    release.uninstall()


def _ready_replicas(cp: ControlPlane, name: str) -> int:
    got = get_json(cp, "modelservice", name, "-n", SERVING) or {}
    return int(got.get("status", {}).get("readyReplicas") or 0)


def _endpoints(cp: ControlPlane, service: str) -> list[str]:
    """The ready `ip:port` endpoints of the service's EndpointSlices, read as the gateway reads
    them."""
    selector = f"kubernetes.io/service-name={service}"
    slices = get_json(cp, "endpointslices", "-n", SERVING, "-l", selector) or {}
    return sorted(e for s in slices.get("items", []) for e in ready_endpoints(s))


def _pod_url(endpoint: str) -> str:
    return f"http://{endpoint}"


def test_routes_by_model_and_adapter_and_lists_the_union(served: Served) -> None:
    client = served.client
    for model in ("chat", "chat:a1"):
        answer = client.chat.completions.create(model=model, messages=chat("hi"), max_tokens=4)
        assert answer.model == model and answer.choices[0].message.content is not None
        assert answer.usage is not None and answer.usage.completion_tokens > 0
    text = client.completions.create(model="chat:a1", prompt="once", max_tokens=3)
    assert text.model == "chat:a1" and text.choices[0].finish_reason in ("stop", "length")
    assert {m.id for m in client.models.list()} == {"chat", "chat:a1", "other", "ghost"}
    assert client.models.retrieve("chat:a1").id == "chat:a1"
    for pod in pods(served.cp, "chat"):
        assert pod["spec"]["nodeName"] == NODE_NAME


def test_an_unknown_model_is_a_404_openai_error(served: Served) -> None:
    for model in ("nope", "chat:nope", "CHAT"):
        with pytest.raises(openai.NotFoundError) as raised:
            served.client.chat.completions.create(model=model, messages=chat("hi"), max_tokens=2)
        body: Any = raised.value.body
        assert body["code"] == "model_not_found" and body["param"] == "model", body
        for other in ("other", "ghost", "a1"):
            assert other not in body["message"].replace(model, ""), body
    with pytest.raises(openai.NotFoundError):
        served.client.models.retrieve("nope")


def test_a_conversation_stays_on_one_pod(served: Served) -> None:
    endpoints = _endpoints(served.cp, "chat")
    assert len(endpoints) == 2, endpoints
    before = {e: metric(_pod_url(e), REQUESTS_TOTAL, endpoint="chat") for e in endpoints}
    for turns in range(1, 5):
        served.client.chat.completions.create(
            model="chat", messages=chat("the same conversation", turns), max_tokens=2
        )
    served_by = {
        e: metric(_pod_url(e), REQUESTS_TOTAL, endpoint="chat") - before[e] for e in endpoints
    }
    key = request_key({"messages": chat("the same conversation")}, "")
    home = choose(key, dict.fromkeys(endpoints, 0), BOUND).endpoint
    assert served_by == {e: (4 if e == home else 0) for e in endpoints}, (home, served_by)


def test_affinity_holds_until_the_load_bound_then_spills(served: Served) -> None:
    """Two pods, bound 1.25: the conversation's pod takes two streams, the third spills to the
    other pod; each pod's own request counter says so."""
    endpoints = _endpoints(served.cp, "chat")
    spills = served.metric(GATEWAY_ROUTED, decision="spill")
    before = {e: metric(_pod_url(e), REQUESTS_TOTAL, endpoint="chat") for e in endpoints}
    body = chat("a long story please")
    home = choose(request_key({"messages": body}, ""), dict.fromkeys(endpoints, 0), BOUND)
    with generating_streams(served.client, "chat", body, 3):
        assert served.metric(GATEWAY_ROUTED, decision="spill") == spills + 1

    def served_by() -> dict[str, float]:
        # Counted as each stream ends at its pod: the pods' in-flight gauges would read 0 if a
        # stream finished generating before the others opened (a loaded machine).
        return {
            e: metric(_pod_url(e), REQUESTS_TOTAL, endpoint="chat") - before[e] for e in endpoints
        }

    expected = {e: (2 if e == home.endpoint else 1) for e in endpoints}
    wait_until(lambda: served_by() == expected, 60, f"streams served as {expected}")


def _asleep(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    """The ModelService once it reads Ready=True, reason ScaledToZero, with no pod left."""
    got = get_json(cp, "modelservice", name, "-n", SERVING)
    cond = condition(got, "Ready")
    if cond.get("status") != "True" or cond.get("reason") != "ScaledToZero":
        return None
    return got if not pods(cp, name) else None


def test_scale_from_zero_holds_requests_until_the_pod_is_ready(served: Served) -> None:
    cp = served.cp
    ms = wait_until(lambda: _asleep(cp, "other"), 60, "other asleep: Ready=True ScaledToZero")
    assert ms["spec"]["replicas"] == 0
    holds = served.metric(GATEWAY_HOLDS, model="other", outcome="ready")

    def ask(i: int) -> Any:
        return served.client.with_options(timeout=HOLD_S + 60).chat.completions.create(
            model="other", messages=chat(f"wake {i}"), max_tokens=3
        )

    sent = time.time()
    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(ask, 0)]
        # The first request patched /scale; the next ones arrive while the pod starts.
        wait_until(lambda: _replicas(cp, "other") == 1, 60, "the gateway's /scale to 1")
        assert not any(ready(p) for p in pods(cp, "other")), "a pod was Ready already"
        answers += [pool.submit(ask, i) for i in (1, 2)]
        pod = wait_until(lambda: _bound(cp, "other"), 300, "other's pod bound")
        try:
            replies = [a.result(HOLD_S + 60) for a in answers]
        except openai.APIStatusError:
            _dump(cp, served.node)
            raise
    answered = time.time()
    assert [r.model for r in replies] == ["other"] * 3
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    # Each was held until the pod's readiness probe passed (model loaded), none sent early.
    assert served.metric(GATEWAY_HOLDS, model="other", outcome="ready") == holds + 3
    assert served.metric(GATEWAY_SCALES, model="other", direction="up") == 1
    assert pod["spec"]["nodeName"] == NODE_NAME
    print(f"\nfirst answer from zero through the gateway: {answered - sent:.1f} s")
    _print_startup(cp, pod["metadata"]["name"])


def _bound(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    return next((p for p in pods(cp, name) if p["spec"].get("nodeName")), None)


def _replicas(cp: ControlPlane, name: str) -> int:
    got = get_json(cp, "modelservice", name, "-n", SERVING) or {}
    return int(got.get("spec", {}).get("replicas", 1))


def test_an_idle_modelservice_scales_back_to_zero(served: Served) -> None:
    cp = served.cp
    wait_until(lambda: _asleep(cp, "other"), IDLE_S + 120, "other idle, back to zero")
    assert served.metric(GATEWAY_SCALES, model="other", direction="down") >= 1
    assert _replicas(cp, "chat") == 2  # no minReplicas 0: left alone


def test_a_pod_killed_mid_request_is_retried_on_the_other(served: Served) -> None:
    cp = served.cp
    endpoints = _endpoints(cp, "chat")
    assert len(endpoints) == 2, endpoints
    doomed = endpoints[0]
    body = conversation_on(doomed, endpoints)
    [pod] = [p for p in pods(cp, "chat") if f"{p['status']['podIP']}:{RUNTIME_PORT}" == doomed]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    retried = served.metric(GATEWAY_RETRIES, model="chat", reason="gone")
    with ThreadPoolExecutor(1) as pool:
        ask = pool.submit(
            served.client.with_options(timeout=300).chat.completions.create,
            model="chat",
            messages=body,
            max_tokens=300,  # long enough to be killed mid-way
            extra_body={"ignore_eos": True},
        )
        doomed_url = _pod_url(doomed)
        wait_until(
            lambda: metric(doomed_url, REQUESTS_IN_FLIGHT, model="chat") >= 1,
            60,
            "the request generating on its pod",
        )
        # The runtime's process is killed on the node: the pod goes away mid-answer, and its
        # endpoint stays listed until kubelet and the EndpointSlice controller notice.
        served.node.ctr("tasks", "kill", "--signal", "SIGKILL", container)
        answer = ask.result(300)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 300
    assert served.metric(GATEWAY_RETRIES, model="chat", reason="gone") == retried + 1


@pytest.fixture(scope="module")
def upgraded(served: Served) -> StreamingLoad:
    """`helm upgrade` giving the gateway a 3 s hold (the chart's default, 120 s, would make the
    hold test wait that long) and the native front (`gateway.front=native`), under a client
    streaming through the gateway all along: the gateway's pod is replaced while requests
    flow, and the tests after it run on the front."""
    load = StreamingLoad(f"{served.url}/v1", "chat")
    load.start()
    try:
        wait_until(lambda: load.ok >= 3, 60, "streamed answers before the upgrade")
        served.release.upgrade("gateway.holdTimeoutSeconds=3", "gateway.front=native")
        settled = load.ok
        wait_until(lambda: load.ok >= settled + 3, 60, "streamed answers after the upgrade")
        # The old pod serves its open connections until it exits: a held request there would
        # wait for its old, long hold.
        wait_until(lambda: len(_gateway_pods(served.cp)) == 1, 120, "the old gateway pod gone")
    finally:
        load.stop()
    return load


def _gateway_pods(cp: ControlPlane) -> list[dict[str, Any]]:
    """The gateway's pods, terminating ones too."""
    selector = "app.kubernetes.io/component=gateway"
    return list((get_json(cp, "pods", "-n", SYSTEM, "-l", selector) or {}).get("items", []))


def test_a_gateway_upgrade_under_streaming_load_loses_no_request(upgraded: StreamingLoad) -> None:
    print(f"gateway upgrade: {upgraded.failed} of {upgraded.ok + upgraded.failed} streams failed")
    assert upgraded.failed == 0, upgraded.errors[:5]


def test_the_hold_times_out_with_503_and_retry_after(
    served: Served, upgraded: StreamingLoad
) -> None:
    # A new connection, to the new pod: the module's client may keep one to the old.
    fresh = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    with fresh, pytest.raises(openai.APIStatusError) as raised:
        fresh.with_options(timeout=60).chat.completions.create(
            model="ghost", messages=chat("anyone?"), max_tokens=2
        )
    error = raised.value
    assert error.status_code == 503, error
    body: Any = error.body
    assert body["code"] == "model_not_ready", body
    assert int(error.response.headers["retry-after"]) >= 1
    assert served.metric(GATEWAY_HOLDS, model="ghost", outcome="timeout") == 1
    # Why it never came: the gateway woke it, and the scheduler found no room for its pod.
    wait_until(lambda: _unschedulable(served.cp, "ghost"), 120, "ghost's pod Unschedulable")


def _unschedulable(cp: ControlPlane, name: str) -> bool:
    found = pods(cp, name)
    return bool(found) and condition(found[0], "PodScheduled").get("reason") == "Unschedulable"


def _print_startup(cp: ControlPlane, name: str) -> None:
    """The woken pod's startup, split; only printed, so a pod already going (idle again, on a
    slow machine: its Ready condition then tells when it stopped) is only named."""
    selector = f"involvedObject.name={name}"
    events = get_json(cp, "events", "-n", SERVING, "--field-selector", selector) or {}
    logs = cp.kubectl("logs", "-n", SERVING, name, "-c", "runtime", "--timestamps", check=False)
    got = get_json(cp, "pod", name, "-n", SERVING)
    if got is None or "deletionTimestamp" in got["metadata"] or logs.returncode != 0:
        print(f"{name} was scaled back to zero before its startup could be read")
        return
    row = phases(got, events["items"], logs.stdout.splitlines(), "model other ready (")
    print(table({name: row}))


def _dump(cp: ControlPlane, node: RealNode) -> None:
    print(cp.kubectl("get", "ms,all,events", "-n", SERVING, "-o", "wide", check=False).stdout)
    print(cp.kubectl("describe", "pods", "-n", SERVING, check=False).stdout[-6000:])
    print(
        cp.kubectl(
            "logs",
            "-n",
            SYSTEM,
            "-l",
            "app.kubernetes.io/component",
            "--tail=40",
            check=False,
        ).stdout
    )
    print("--- kubelet:\n" + node.log("kubelet")[-6000:])


def test_the_native_front_serves_routes_streams_and_what_it_leaves_to_the_app(
    served: Served, upgraded: StreamingLoad
) -> None:
    [pod] = _gateway_pods(served.cp)
    [container] = pod["spec"]["containers"]
    assert "--front=native" in container["args"]
    fresh = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    with fresh:
        for model in ("chat", "chat:a1"):
            answer = fresh.chat.completions.create(model=model, messages=chat("hi"), max_tokens=4)
            assert answer.model == model and answer.choices[0].message.content is not None
        stream = fresh.chat.completions.create(
            model="chat", messages=chat("a story"), max_tokens=24, stream=True
        )
        chunks = list(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        # Through the app behind it: the model list and an unknown model's 404.
        assert {m.id for m in fresh.models.list()} == {"chat", "chat:a1", "other", "ghost"}
        with pytest.raises(openai.NotFoundError):
            fresh.chat.completions.create(model="nope", messages=chat("hi"), max_tokens=2)
