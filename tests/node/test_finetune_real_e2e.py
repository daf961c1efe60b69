"""A FineTuneJob trains in a real pod on a real PersistentVolume, and the ModelService that
references it serves the adapter without a restart.

On the real node, in a namespace enforcing Pod Security "restricted": the operator's Job runs
`modelkube finetune` from the runtime image (read-only root; the adapter goes to a hostPath
PersistentVolume through its claim), the trainer patches its own FineTuneJob's progress with its
service account's token (watched here as it happens), the operator marks it Succeeded, and the
runtime pod (started before the training, the claim mounted from the start) loads the adapter
when kubelet refreshes its ConfigMap: `<service>:<adapter>` answers through the ClusterIP and
the pod's restartCount stays 0. tests/operator/test_handoff_e2e.py proves the same on kwok with
processes standing in for the pods.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from modelkube_operator.builders.common import restricted_pod_context

from tests.controlplane.cluster import ControlPlane
from tests.finetune.conftest import CHAT
from tests.node.node import NODE_NAME, RealNode
from tests.operator.harness import OperatorProcess, condition, get_json
from tests.operator.test_finetunejob_e2e import storage
from tests.operator.test_handoff_e2e import JOB, PROMPT, SERVICE, adapters_ready, in_process
from tests.waiting import wait_until

pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1200)]

NAMESPACE = "real-finetune"
SMALL = {"requests": {"cpu": "250m", "memory": "512Mi"}}


def _manifests(volume: Path) -> str:
    """The data, the claim, the ModelService, and the FineTuneJob suspended (the user's
    `suspend`): the service's pod is up before any training starts."""
    docs = storage(NAMESPACE, str(volume))
    docs[0]["data"]["train.jsonl"] = CHAT.read_text()
    service = json.loads(json.dumps(SERVICE))
    service["spec"]["runtime"] = {"resources": SMALL}
    job = json.loads(json.dumps(JOB))
    job["spec"]["trainer"] = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
    job["spec"]["suspend"] = True
    return yaml.safe_dump_all([*docs, service, job])


@pytest.fixture(scope="module")
def volume(node: RealNode) -> Path:
    """The hostPath PersistentVolume's directory, writable by the pods' non-root user (hostPath
    volumes get no fsGroup: the administrator who makes one sets its owner)."""
    path = node.workdir / "volumes" / "adapters"
    path.mkdir(parents=True)
    uid = restricted_pod_context()["runAsUser"]
    os.chown(path, uid, uid)
    return path


@pytest.fixture(scope="module")
def restricted(node_control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[str]:
    """The namespace, enforcing Pod Security "restricted"; deleted after."""
    cp = node_control_plane
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    metadata = {"name": NAMESPACE, "labels": labels}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    yield NAMESPACE
    cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_a_fine_tune_trains_in_a_real_pod_and_is_served_without_a_restart(
    node_control_plane: ControlPlane, operator: OperatorProcess, restricted: str, volume: Path
) -> None:
    cp = node_control_plane
    # The service's pod serves the base model before training starts, and must pick the
    # adapter up later without being replaced or restarted.
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=_manifests(volume))
    client = _client(cp)
    try:
        wait_until(lambda: _answer(client, "chat"), 600, "chat through the ClusterIP")
    except TimeoutError:
        print(_dump(cp))
        raise
    # The ModelService may be reconciled before the FineTuneJob is seen, without its claim;
    # from the rollout that mounts the claim on, nothing may replace the pod.
    deployment = wait_until(lambda: _rolled_out_with_claim(cp), 300, "the claim mounted")
    [before] = _runtime_pods(cp)
    # Watch the FineTuneJob from before it trains: every status patch the trainer sends.
    watch = subprocess.Popen(
        [
            str(cp.bins["kubectl"]),
            f"--kubeconfig={cp.admin_kubeconfig}",
            *("get", "finetunejob", "-n", NAMESPACE, "--field-selector=metadata.name=tune"),
            *("--watch", "-o", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        resume = '{"spec": {"suspend": false}}'
        cp.kubectl("patch", "ftj", "tune", "-n", NAMESPACE, "--type=merge", "-p", resume)
        pod = wait_until(lambda: _trainer_pod(cp), 180, "the training pod")
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        ftj = wait_until(lambda: _succeeded(cp), 600, "the FineTuneJob to succeed")
    except TimeoutError:
        print(_dump(cp))
        raise
    finally:
        watch.terminate()
    seen = _progress_seen(watch.communicate()[0])
    total = ftj["status"]["progress"]["totalIterations"]
    assert total == JOB["spec"]["hyperparameters"]["iterations"]  # type: ignore[index]
    # Reported while it trained, not only at the end: its own patches, in order.
    assert any(0 < i < total for i in seen), seen
    assert seen == sorted(seen) and seen[-1] == total, seen
    assert ftj["status"]["adapterURI"] == "pvc://adapters/tune"
    assert (volume / "tune" / "adapters.safetensors").is_file()

    ms = adapters_ready(cp, "chat", NAMESPACE, operator, "status", "True", 120)
    assert ms["status"]["servedModels"] == ["chat", "chat:tuned"]
    # kubelet refreshes the runtime's mounted ConfigMap; the runtime picks the adapter up.
    wait_until(lambda: _answer(client, "chat:tuned"), 300, "chat:tuned through the ClusterIP")
    served = _answer(client, "chat:tuned")
    assert served == in_process(volume / "tune")
    assert served != _answer(client, "chat")
    now = get_json(cp, "deployment", "chat", "-n", NAMESPACE) or {}
    assert now["metadata"]["generation"] == deployment["metadata"]["generation"], "rolled"
    [after] = _runtime_pods(cp)
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the pod was replaced"
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


def _rolled_out_with_claim(cp: ControlPlane) -> dict[str, Any] | None:
    deployment = get_json(cp, "deployment", "chat", "-n", NAMESPACE) or {}
    volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    status = deployment.get("status", {})
    done = (
        any("persistentVolumeClaim" in v for v in volumes)
        and status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == status.get("readyReplicas") == status.get("replicas")
        and len(_runtime_pods(cp)) == 1
    )
    return deployment if done else None


def _trainer_pod(cp: ControlPlane) -> dict[str, Any] | None:
    """The Job's pod once it left Pending (admitted by Pod Security, its image started)."""
    listed = get_json(cp, "pods", "-n", NAMESPACE, "-l", "job-name=tune") or {}
    pods = [p for p in listed.get("items", []) if p["status"].get("phase") != "Pending"]
    return pods[0] if pods else None


def _succeeded(cp: ControlPlane) -> dict[str, Any] | None:
    ftj = get_json(cp, "ftj", "tune", "-n", NAMESPACE)
    return ftj if condition(ftj, "Succeeded").get("status") == "True" else None


def _runtime_pods(cp: ControlPlane) -> list[dict[str, Any]]:
    listed = get_json(cp, "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/instance=chat")
    pods: list[dict[str, Any]] = (listed or {}).get("items", [])
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]]


def _progress_seen(stream: str) -> list[int]:
    """The distinct progress.iteration values in a `kubectl get --watch -o json` stream."""
    decoder = json.JSONDecoder()
    seen: list[int] = []
    text = stream.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        text = text[end:].lstrip()
        iteration = obj.get("status", {}).get("progress", {}).get("iteration", 0)
        if iteration and iteration not in seen:
            seen.append(iteration)
    return seen


def _client(cp: ControlPlane) -> openai.OpenAI:
    service = wait_until(lambda: get_json(cp, "service", "chat", "-n", NAMESPACE), 60, "Service")
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/v1"
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def _answer(client: openai.OpenAI, model: str) -> str | None:
    try:
        reply = client.chat.completions.create(
            model=model,
            messages=PROMPT,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
        )
    except (openai.APIConnectionError, openai.APIStatusError):
        return None
    return reply.choices[0].message.content


def _dump(cp: ControlPlane) -> str:
    listed = cp.kubectl("get", "all,ftj,ms,events,pvc", "-n", NAMESPACE, "-o", "wide", check=False)
    logs = cp.kubectl("logs", "-n", NAMESPACE, "-l", "job-name=tune", "--tail=40", check=False)
    return f"{listed.stdout}\n--- trainer:\n{logs.stdout}{logs.stderr}"
