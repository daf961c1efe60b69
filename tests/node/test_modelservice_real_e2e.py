"""A ModelService served by real pods: the operator (a process under its own ServiceAccount)
makes the runtime's Deployment, its pods run the image `make images` builds on the real node in a
namespace enforcing Pod Security "restricted" with a read-only root filesystem, and the official
`openai` client answers through the Service's ClusterIP (kube-proxy, iptables).

Each test prints what it measured (apply -> first answer split, requests lost in a rollout);
timings are reported, never asserted.
"""

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.node.inject import END_ENGINE_THREAD, gdb_unusable, run_python_in
from tests.node.node import NODE_NAME, RealNode
from tests.node.startup import phases, table
from tests.node.streaming import StreamingLoad
from tests.operator.harness import OperatorProcess, get_json
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1500)]

NAMESPACE = "real-serving"
NAME = "tiny"


@pytest.fixture(scope="module")
def served(
    node_control_plane: ControlPlane, node: RealNode, operator: OperatorProcess
) -> Iterator[str]:
    """The ModelService `tiny` (2 replicas) Ready in a restricted namespace: its ClusterIP."""
    cp = node_control_plane
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    applied = time.time()
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(_modelservice(32)))
    try:
        service = wait_until(
            lambda: get_json(cp, "service", NAME, "-n", NAMESPACE), 60, "the runtime's Service"
        )
        url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1"
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=10)
        wait_until(lambda: _answers(client), 600, f"an answer through {url}")
        answered = time.time()
        # The first answer needs one ready pod; the tests want both.
        wait_until(lambda: len(_ready(_pods(cp))) == 2, 300, "both pods ready")
    except (TimeoutError, AssertionError):
        _dump(cp, node, operator)
        raise
    _print_startup(cp, applied, answered)
    yield url
    cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _modelservice(max_concurrent: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "replicas": 2,
            "runtime": {
                "maxConcurrentRequests": max_concurrent,
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            },
        },
    }


def _answers(client: openai.OpenAI) -> str | None:
    try:
        reply = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
    except (openai.APIConnectionError, openai.APIStatusError):
        return None
    return reply.choices[0].message.content or "(empty)"


def test_the_openai_client_answers_through_the_cluster_ip(
    node_control_plane: ControlPlane, served: str
) -> None:
    cp = node_control_plane
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert [m.id for m in client.models.list()] == [NAME]
    pods = _pods(cp)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert pod["status"]["containerStatuses"][0]["ready"] is True

    def ready_replicas() -> Any:
        ms = get_json(cp, "modelservice", NAME, "-n", NAMESPACE) or {}
        return ms.get("status", {}).get("readyReplicas")

    # The operator copies the Deployment's count into the status on its next event.
    wait_until(lambda: ready_replicas() == 2, 30, "status.readyReplicas 2")


def test_a_rolling_update_under_streaming_load_loses_no_request(
    node_control_plane: ControlPlane, served: str
) -> None:
    cp = node_control_plane
    before = {p["metadata"]["name"] for p in _pods(cp)}
    load = StreamingLoad(served, NAME)
    load.start()
    wait_until(lambda: load.ok >= 5, 60, "streamed answers before the rollout")
    # A settings change: the pod template's settings hash changes and the pods roll.
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(_modelservice(16)))

    def rolled() -> bool:
        pods = _pods(cp)
        names = {p["metadata"]["name"] for p in pods}
        return len(_ready(pods)) == len(pods) == 2 and not names & before

    wait_until(rolled, 300, "the pods to be replaced by ready new ones")
    settled = load.ok
    wait_until(lambda: load.ok >= settled + 5, 60, "streamed answers after the rollout")
    load.stop()
    print(f"rolling update: {load.failed} of {load.ok + load.failed} streamed requests failed")
    assert load.failed == 0, load.errors[:5]


def test_a_deleted_pod_is_replaced_and_clients_retrying_get_answers(
    node_control_plane: ControlPlane, served: str
) -> None:
    cp = node_control_plane
    victim = _pods(cp)[0]["metadata"]["name"]
    cp.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force")
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=5, timeout=30)
    assert _answers(client)

    def replaced() -> bool:
        pods = _pods(cp)
        return len(_ready(pods)) == 2 and victim not in {p["metadata"]["name"] for p in pods}

    wait_until(replaced, 180, f"a ready pod in place of {victim}")
    assert _answers(client)


def test_a_runtime_killed_with_sigkill_is_restarted_and_answers_again(
    node_control_plane: ControlPlane, node: RealNode, served: str
) -> None:
    cp = node_control_plane
    pod = _pods(cp)[0]
    name = pod["metadata"]["name"]
    [status] = pod["status"]["containerStatuses"]
    container = status["containerID"].removeprefix("containerd://")
    # kill -9 of the container's process, on the node: no API in between.
    node.ctr("tasks", "kill", "--signal", "SIGKILL", container)

    def restarted() -> bool:
        got = get_json(cp, "pod", name, "-n", NAMESPACE) or {}
        [now] = got.get("status", {}).get("containerStatuses", [{}])
        return bool(now.get("restartCount", 0) > status["restartCount"] and now.get("ready"))

    wait_until(restarted, 180, f"{name}'s runtime restarted by kubelet and ready again")
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=5, timeout=30)
    assert _answers(client)


def test_kubectl_logs_and_exec_reach_a_runtime_pod_through_the_api_server(
    node_control_plane: ControlPlane, served: str
) -> None:
    cp = node_control_plane
    name = _pods(cp)[0]["metadata"]["name"]
    # API server -> kubelet on the node's InternalIP: TLS both ways, authorized by the API
    # server; the runtime's own line from its model load.
    logs = cp.kubectl("logs", "-n", NAMESPACE, name, "-c", "runtime", check=False)
    assert logs.returncode == 0, logs.stderr
    assert f"model {NAME} ready (engine:" in logs.stdout
    # A command in the pod's container: its own network namespace, its read-only root.
    probe = (
        "import urllib.request, pathlib;"
        "print(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status);"
        "pathlib.Path('/etc/probe').write_text('x')"
    )
    ran = cp.kubectl(
        "exec", "-n", NAMESPACE, name, "-c", "runtime", "--", "python3", "-c", probe, check=False
    )
    assert ran.stdout.splitlines()[:1] == ["200"], ran.stderr
    assert "Read-only file system" in ran.stderr
    assert ran.returncode != 0


def test_a_runtime_whose_engine_thread_died_is_restarted_by_its_liveness_probe(
    node_control_plane: ControlPlane, node: RealNode, served: str
) -> None:
    cp = node_control_plane
    if (why := gdb_unusable()) is not None:
        pytest.skip(why)
    pod = _pods(cp)[0]
    name = pod["metadata"]["name"]
    [status] = pod["status"]["containerStatuses"]
    container = status["containerID"].removeprefix("containerd://")
    # Only the engine thread ends: the process and its HTTP server stay up. Readiness takes
    # the pod out of the Service; only the liveness probe (/healthz) gets it restarted.
    run_python_in(_task_pid(node, container), END_ENGINE_THREAD)

    def restarted() -> bool:
        got = get_json(cp, "pod", name, "-n", NAMESPACE) or {}
        [now] = got.get("status", {}).get("containerStatuses", [{}])
        return bool(now.get("restartCount", 0) > status["restartCount"] and now.get("ready"))

    wait_until(restarted, 240, f"{name}'s runtime restarted by its liveness probe")
    events = cp.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}"
    ).stdout
    assert "Liveness probe failed" in events, events
    previous = cp.kubectl("logs", "-n", NAMESPACE, name, "-c", "runtime", "--previous").stdout
    assert "Exception in thread" in previous and "RuntimeError" in previous, previous[-2000:]
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=5, timeout=30)
    assert _answers(client)


def _task_pid(node: RealNode, container: str) -> int:
    """The container's process as the node sees it (containerd's task)."""
    for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid, _ = line.split()
        if task == container:
            return int(pid)
    raise AssertionError(f"no task {container}")


def _pods(cp: ControlPlane) -> list[dict[str, Any]]:
    listed = get_json(cp, "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={NAME}")
    return [p for p in (listed or {}).get("items", []) if "deletionTimestamp" not in p["metadata"]]


def _ready(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"].get("containerStatuses", [{}])[0].get("ready")]


def _print_startup(cp: ControlPlane, applied: float, answered: float) -> None:
    """apply -> first answer, split per pod: schedule, image, start, model load, ready.
    The first answer can come from the first pod Ready (a startup probe every second), so
    the split waits for every pod's."""
    wait_until(lambda: len(_ready_pods(cp)) == 2, 180, "both pods Ready for the startup split")
    rows = {}
    for pod in _ready_pods(cp):
        name = pod["metadata"]["name"]
        selector = f"involvedObject.name={name}"
        events = get_json(cp, "events", "-n", NAMESPACE, "--field-selector", selector) or {}
        logs = cp.kubectl("logs", "-n", NAMESPACE, name, "-c", "runtime", "--timestamps")
        loaded_mark = f"model {NAME} ready ("
        rows[name] = phases(pod, events["items"], logs.stdout.splitlines(), loaded_mark)
    print(f"\napply -> first answer through the ClusterIP: {answered - applied:.1f} s")
    print(table(rows))


def _ready_pods(cp: ControlPlane) -> list[dict[str, Any]]:
    return [
        pod
        for pod in _pods(cp)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]


def _dump(cp: ControlPlane, node: RealNode, operator: OperatorProcess) -> None:
    print(cp.kubectl("get", "all,events", "-n", NAMESPACE, "-o", "wide", check=False).stdout)
    print(cp.kubectl("describe", "pods", "-n", NAMESPACE, check=False).stdout[-6000:])
    print(
        cp.kubectl(
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            f"app.kubernetes.io/instance={NAME}",
            "--tail=50",
            check=False,
        ).stdout
    )
    print("--- operator:\n" + operator.log())
    print("--- kubelet:\n" + node.log("kubelet"))
