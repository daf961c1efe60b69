"""The operator under test: its ServiceAccount, ClusterRole and process, on the control plane."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from modelkube_operator.rbac import RULES

from tests.controlplane.cluster import ControlPlane, write_kubeconfig
from tests.controlplane.stages import EXIT_CODE_ANNOTATION, MESSAGE_ANNOTATION
from tests.serving.runtime_process import free_port
from tests.waiting import wait_until as wait_until  # the one wait, re-exported

OPERATOR_NS = "modelkube-system"
OPERATOR_SA = "modelkube-operator"
REPO = Path(__file__).resolve().parents[2]


def operator_kubeconfig(cp: ControlPlane) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount, bound to its ClusterRole."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": OPERATOR_SA},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": OPERATOR_SA,
        },
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}],
    }
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR_SA, "namespace": OPERATOR_NS},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": OPERATOR_SA},
            "rules": RULES,
        },
        binding,
    ]
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    token = cp.kubectl(
        "create", "token", OPERATOR_SA, "-n", OPERATOR_NS, "--duration=24h"
    ).stdout.strip()
    path = cp.workdir / "operator.kubeconfig"
    write_kubeconfig(path, cp.server, cp.ca_file, token)
    return path


@dataclass
class OperatorProcess:
    kubeconfig: Path
    log_path: Path
    namespaces: str = "test-*"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    metrics_port: int = 0

    def start(self) -> "OperatorProcess":
        self.port = free_port()
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelkube_serving",
                    "operator",
                    "--namespace",
                    self.namespaces,
                    "--liveness",
                    f"http://127.0.0.1:{self.port}/healthz",
                    "--metrics-port",
                    str(self.metrics_port),
                    # Every watch event and handler run in the log a failed test shows.
                    "--log-level",
                    "debug",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(lambda: self._alive(), 60, f"operator liveness\n{self.log()}")
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def metrics(self) -> str:
        """The operator's /metrics, as Prometheus would scrape it."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition `type_` in an object's status, or {} while it has none."""
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def with_condition(
    cp: ControlPlane, kind: str, namespace: str, name: str, type_: str
) -> dict[str, Any] | None:
    """The object once its condition `type_` is True, else None (for wait_until)."""
    obj = get_json(cp, kind, name, "-n", namespace)
    return obj if condition(obj, type_).get("status") == "True" else None


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any] | None:
    result = cp.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def finish_training_pod(
    cp: ControlPlane, namespace: str, job: str, exit_code: int, message: str = ""
) -> None:
    """End a FineTuneJob's training pod as if its trainer exited with `exit_code` and wrote
    `message` to its termination log (kwok acts)."""

    def running_pod() -> str | None:
        pods = get_json(cp, "pods", "-n", namespace, "-l", f"modelkube.io/finetunejob={job}")
        running = [
            p["metadata"]["name"]
            for p in (pods or {}).get("items", [])
            if p.get("status", {}).get("phase") == "Running"
            and EXIT_CODE_ANNOTATION not in p["metadata"].get("annotations", {})
        ]
        return running[0] if running else None

    pod = wait_until(running_pod, 60, f"a running training pod of {job}")
    # The message first: kwok finishes the pod as soon as the exit code is there.
    cp.kubectl("annotate", "pod", pod, "-n", namespace, f"{MESSAGE_ANNOTATION}={message}")
    cp.kubectl("annotate", "pod", pod, "-n", namespace, f"{EXIT_CODE_ANNOTATION}={exit_code}")


def adapters_claim(namespace: str, host_path: str | None = None) -> list[dict[str, Any]]:
    """A PersistentVolume bound to claim `adapters` in `namespace`, so training pods schedule."""
    volume = f"adapters-{namespace}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": host_path or f"/tmp/{volume}"},
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": "adapters"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "adapters", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
