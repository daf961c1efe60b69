"""FineTuneJob → Job → progress in status → Succeeded → the ModelService serves the adapter.

Pods cannot run on kwok's nodes, so the test plays the kubelet's two parts itself:
- it runs the training pod's command (the Job's own args) in this process tree, with the pod's
  service account (a token of the per-job account, from the TokenRequest API) and the PV's
  host path as the output, then ends the pod through kwok with the trainer's exit code, so the
  real Job controller completes the Job and the real operator marks the FineTuneJob Succeeded;
- it copies the runtime ConfigMap's adapter list into the file a real runtime process polls,
  as the kubelet refreshes a mounted ConfigMap, and the runtime loads the adapter while it
  serves (no restart).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.finetune.conftest import CHAT
from tests.operator.harness import (
    OperatorProcess,
    condition,
    finish_training_pod,
    get_json,
    wait_until,
)
from tests.operator.test_finetunejob_e2e import storage
from tests.serving.runtime_process import RuntimeProcess

SERVICE = {
    "apiVersion": "modelkube.io/v1alpha1",
    "kind": "ModelService",
    "metadata": {"name": "chat"},
    "spec": {
        "model": {"uri": "builtin://tiny"},
        "adapters": [{"name": "tuned", "fineTuneJobRef": {"name": "tune"}}],
    },
}
JOB = {
    "apiVersion": "modelkube.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "tune"},
    "spec": {
        "baseModel": {"uri": "builtin://tiny"},
        "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
        "hyperparameters": {"iterations": 20, "learningRate": "0.01"},
        "output": {"uri": "pvc://adapters/tune"},
    },
}
PROMPT = [{"role": "user", "content": "Say the color red."}]


def service_account_dir(cp: ControlPlane, namespace: str, account: str, where: Path) -> Path:
    """What the kubelet mounts into the pod: a bound token, the cluster CA, the namespace."""
    token = cp.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout
    where.mkdir(parents=True, exist_ok=True)
    (where / "token").write_text(token.strip())
    (where / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    (where / "namespace").write_text(namespace)
    return where


def can_i(cp: ControlPlane, token: str, *args: str) -> bool:
    result = cp.kubectl("auth", "can-i", *args, f"--token={token}", check=False)
    return result.stdout.strip() == "yes"


def adapters_ready(
    cp: ControlPlane,
    name: str,
    namespace: str,
    operator: OperatorProcess,
    field: str,
    value: str,
    timeout: float,
) -> dict[str, Any]:
    """The ModelService once its AdaptersReady condition's `field` is `value`."""
    found: dict[str, Any] = wait_until(
        lambda: (
            (m := get_json(cp, "modelservice", name, "-n", namespace))
            and condition(m, "AdaptersReady").get(field) == value
            and m
        ),
        timeout,
        f"AdaptersReady {field}={value}\n{operator.log()}",
    )
    return found


def run_training_pod(
    cp: ControlPlane,
    job: dict[str, Any],
    sa_dir: Path,
    paths: dict[str, str],
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """The Job's container command, with its mount paths mapped onto this machine."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = []
    for arg in container["args"]:
        for mounted, local in paths.items():
            arg = arg.replace(mounted, local)
        args.append(arg)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.pop("MODELKUBE_CACHE_DIR")  # the pod's emptyDir; here the test machine's cache serves
    env |= {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cp.api_port),
        "MODELKUBE_SERVICEACCOUNT_DIR": str(sa_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "modelkube_serving", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def test_a_finished_fine_tune_is_served_without_a_restart(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    hostpath = tmp_path / "volume"  # this run's own: an earlier run's adapter would be reused
    docs = storage(namespace, str(hostpath))
    docs[0]["data"]["train.jsonl"] = CHAT.read_text()
    manifests = yaml.safe_dump_all([*docs, JOB, SERVICE])
    applied = cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests, check=False)
    assert applied.returncode == 0, applied.stderr

    # Until the job succeeds, the service says what it waits for and serves the base only.
    ms = adapters_ready(cp, "chat", namespace, operator, "reason", "AdaptersWaiting", 30)
    assert "tuned: FineTuneJob tune is training" in condition(ms, "AdaptersReady")["message"]
    assert ms["status"]["servedModels"] == ["chat"]
    deployment = wait_until(lambda: get_json(cp, "deployment", "chat", "-n", namespace), 30, "dep")

    # A real runtime with the service's adapter file, serving the base model meanwhile.
    adapters_file = tmp_path / "adapters.json"
    pvc_root = tmp_path / "mnt"
    pvc_root.mkdir()
    (pvc_root / "adapters").symlink_to(hostpath, target_is_directory=True)
    runtime = RuntimeProcess(
        [
            *("--model", "builtin://tiny", "--served-model-name", "chat"),
            *("--adapters-file", str(adapters_file)),
        ],
        tmp_path / "runtime.log",
        env={"MODELKUBE_PVC_ROOT": str(pvc_root)},
    )
    runtime.start()
    try:
        job = wait_until(lambda: get_json(cp, "job", "tune", "-n", namespace), 30, "the Job")
        sa_dir = service_account_dir(cp, namespace, "tune-trainer", tmp_path / "sa")
        token = (sa_dir / "token").read_text()
        own = ["patch", "finetunejobs.modelkube.io/tune", "--subresource=status", "-n", namespace]
        assert can_i(cp, token, *own)
        assert not can_i(cp, token, "patch", "finetunejobs.modelkube.io/other", "-n", namespace)
        assert not can_i(cp, token, "get", "secrets", "-n", namespace)

        data_dir = tmp_path / "dataset"
        data_dir.mkdir()
        (data_dir / "train.jsonl").write_text(CHAT.read_text())
        hostpath.mkdir(parents=True, exist_ok=True)
        paths = {"/mnt/models/adapters": str(hostpath), "/etc/modelkube/dataset": str(data_dir)}
        trained = run_training_pod(cp, job, sa_dir, paths)
        assert trained.returncode == 0, trained.stderr
        assert "cannot report progress" not in trained.stderr

        ftj = get_json(cp, "finetunejob", "tune", "-n", namespace) or {}
        progress = ftj["status"]["progress"]
        assert (progress["iteration"], progress["totalIterations"]) == (20, 20)
        assert progress["percent"] == 100 and progress["trainLoss"] and progress["validationLoss"]
        table = cp.kubectl("get", "ftj", "tune", "-n", namespace).stdout
        assert progress["trainLoss"] in table and "20" in table

        finish_training_pod(cp, namespace, "tune", 0)
        ms = adapters_ready(cp, "chat", namespace, operator, "status", "True", 60)
        assert ms["status"]["servedModels"] == ["chat", "chat:tuned"]
        configmap = get_json(cp, "configmap", "chat-runtime", "-n", namespace) or {}
        listed = json.loads(configmap["data"]["adapters.json"])
        assert listed == {"adapters": [{"name": "tuned", "uri": "pvc://adapters/tune"}]}
        after = get_json(cp, "deployment", "chat", "-n", namespace) or {}
        assert after["metadata"]["generation"] == deployment["metadata"]["generation"], (
            "handing the adapter over rolled the pods"
        )

        adapters_file.write_text(configmap["data"]["adapters.json"])  # the kubelet's refresh
        wait_until(lambda: "chat:tuned" in model_ids(runtime), 60, f"chat:tuned\n{runtime.log()}")
        served = complete(runtime, "chat:tuned")
        assert served == in_process(hostpath / "tune")
        assert served != complete(runtime, "chat")
    finally:
        runtime.stop()


def model_ids(runtime: RuntimeProcess) -> list[str]:
    body = httpx.get(f"{runtime.url}/v1/models", timeout=10).json()
    return [m["id"] for m in body["data"]]


def complete(runtime: RuntimeProcess, model: str) -> str:
    body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{runtime.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def in_process(adapter: Path) -> str:
    """mlx-lm's own load of base + adapter, greedy: what the runtime must reproduce."""
    script = (
        "import sys; from mlx_lm import load, generate;"
        "from modelkube_serving.models.builtin import ensure_builtin;"
        "m, t = load(str(ensure_builtin('tiny')), adapter_path=sys.argv[1]);"
        f"p = t.apply_chat_template({PROMPT!r}, add_generation_prompt=True);"
        "print(generate(m, t, p, max_tokens=12), end='')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(adapter)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
