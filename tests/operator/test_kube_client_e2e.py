"""The one Kubernetes client (operator, runtime, trainer) against a real API server."""

import dataclasses
import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelkube_operator.k8s.client import FIELD_MANAGER, ApiError, Kube
from modelkube_operator.k8s.credentials import Credentials, in_cluster, load_credentials

from modelkube_serving.finetune.progress import Snapshot
from modelkube_serving.finetune.status_report import StatusReporter
from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import wait_until
from tests.serving.runtime_process import free_port

# Not `test-*`: the operator under test, when another test started it, leaves these alone.
_namespaces = itertools.count()
READER = "reader"
STRANGER = "stranger"


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    name = f"kube-client-{next(_namespaces)}"
    control_plane.kubectl("create", "namespace", name)
    return name


def admin(cp: ControlPlane) -> Credentials:
    return load_credentials(str(cp.admin_kubeconfig))


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "kube-client"}},
        "data": data,
    }


@pytest.mark.asyncio
async def test_every_call_round_trips(control_plane: ControlPlane, namespace: str) -> None:
    kube = Kube(admin(control_plane))
    try:
        created = await kube.create(configmap(namespace, "one", a="1"))
        assert created["metadata"]["uid"]
        with pytest.raises(ApiError) as taken:
            await kube.create(configmap(namespace, "one", a="1"))
        assert (taken.value.status, taken.value.reason) == (409, "AlreadyExists")
        assert (taken.value.verb, taken.value.resource) == ("create", "configmaps")
        assert "already exists" in taken.value.message
        assert not taken.value.transient

        got = await kube.get("v1", "ConfigMap", namespace, "one")
        assert got is not None and got["data"] == {"a": "1"}
        assert await kube.get("v1", "ConfigMap", namespace, "absent") is None

        patched = await kube.merge_patch("v1", "ConfigMap", namespace, "one", {"data": {"b": "2"}})
        assert patched["data"] == {"a": "1", "b": "2"}
        applied = await kube.apply(configmap(namespace, "two", c="3"))
        managers = {m["manager"] for m in applied["metadata"]["managedFields"]}
        assert managers == {FIELD_MANAGER}

        listed = await kube.list("v1", "ConfigMap", namespace, "app=kube-client")
        assert sorted(o["metadata"]["name"] for o in listed) == ["one", "two"]
        assert await kube.list("v1", "ConfigMap", namespace, "app=none") == []

        await kube.delete("v1", "ConfigMap", namespace, "one")
        await kube.delete("v1", "ConfigMap", namespace, "one")  # absent already: not an error
        assert await kube.get("v1", "ConfigMap", namespace, "one") is None
    finally:
        await kube.close()


def access(namespace: str) -> list[dict[str, Any]]:
    """`reader` may read ConfigMaps in the namespace; `stranger` may do nothing."""
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        for name in (READER, STRANGER)
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": READER},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": READER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER},
        "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": namespace}],
    }
    return [*accounts, role, binding]


def project_token(sa_dir: Path, version: str, token: str) -> None:
    """Rotate as the kubelet does: a new directory, then `..data` repointed in one rename."""
    target = sa_dir / f"..{version}"
    target.mkdir()
    (target / "token").write_text(token)
    (sa_dir / "..data_tmp").symlink_to(target.name)
    os.replace(sa_dir / "..data_tmp", sa_dir / "..data")


@pytest.mark.asyncio
async def test_a_rotated_token_is_presented_at_once(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(access(namespace)))

    def token(account: str) -> str:
        return cp.kubectl("create", "token", account, "-n", namespace).stdout.strip()

    project_token(tmp_path, "1", token(READER))
    (tmp_path / "token").symlink_to("..data/token")
    shutil.copy(cp.ca_file, tmp_path / "ca.crt")
    (tmp_path / "namespace").write_text(namespace)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cp.api_port))
    monkeypatch.setenv("MODELKUBE_SERVICEACCOUNT_DIR", str(tmp_path))
    kube = Kube(in_cluster())
    try:
        assert await kube.list("v1", "ConfigMap", namespace) is not None
        project_token(tmp_path, "2", token(STRANGER))
        with pytest.raises(ApiError) as refused:
            await kube.list("v1", "ConfigMap", namespace)
        assert (refused.value.status, refused.value.reason) == (403, "Forbidden")
        assert (refused.value.verb, refused.value.resource) == ("list", "configmaps")
        assert f"system:serviceaccount:{namespace}:{STRANGER}" in refused.value.message
        project_token(tmp_path, "3", token(READER))
        assert await kube.list("v1", "ConfigMap", namespace) is not None
    finally:
        await kube.close()


@pytest.mark.asyncio
async def test_an_unreachable_server_is_an_api_error() -> None:
    kube = Kube(Credentials(server=f"https://127.0.0.1:{free_port()}", insecure=True))
    try:
        with pytest.raises(ApiError) as unreachable:
            await kube.get("modelkube.io/v1alpha1", "FineTuneJob", "team-a", "x")
    finally:
        await kube.close()
    assert (unreachable.value.status, unreachable.value.reason) == (0, "Unreachable")
    assert unreachable.value.resource == "finetunejobs.modelkube.io"
    assert "cannot reach the Kubernetes API server" in unreachable.value.message
    assert unreachable.value.transient


FINETUNEJOB = {
    "apiVersion": "modelkube.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "tune"},
    "spec": {
        "baseModel": {"uri": "builtin://tiny"},
        "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
        "hyperparameters": {"iterations": 10},
        "output": {"uri": "pvc://adapters/tune"},
    },
}


def test_the_trainer_reports_progress_from_its_thread(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(FINETUNEJOB))
    reporter = StatusReporter(dataclasses.replace(admin(cp), namespace=namespace), "tune")
    reporter.update(Snapshot(3, 10, train_loss=1.5), milestone=True)

    def finetunejob() -> dict[str, Any]:
        get = ["get", "finetunejob", "tune", "-n", namespace, "-o", "yaml", "--show-managed-fields"]
        obj: dict[str, Any] = yaml.safe_load(cp.kubectl(*get).stdout)
        return obj

    def progress() -> dict[str, Any] | None:
        found: dict[str, Any] | None = finetunejob().get("status", {}).get("progress")
        return found

    first = wait_until(progress, 30, "the first progress report")
    assert (first["iteration"], first["trainLoss"]) == (3, "1.5000")
    reporter.update(Snapshot(10, 10, phase="done"), milestone=False)
    reporter.close()  # sends what is pending
    final = progress()
    assert final is not None and (final["iteration"], final["percent"]) == (10, 100)
    managers = {
        (m["manager"], m.get("subresource")) for m in finetunejob()["metadata"]["managedFields"]
    }
    assert ("modelkube-finetune", "status") in managers
