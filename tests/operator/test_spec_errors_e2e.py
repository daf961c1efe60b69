"""A spec the API server accepts but that cannot work ends in a status condition and a Warning
Event on the object (kopf stops retrying it), never only in the operator's log; and the API
server's own refusals are classified as passing or not."""

from typing import Any

import kopf
import pytest
import yaml
from modelkube_operator.handlers.errors import to_kopf
from modelkube_operator.k8s.client import ApiError, Kube
from modelkube_operator.k8s.credentials import load_credentials

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, get_json, wait_until
from tests.operator.test_finetunejob_e2e import finetunejob
from tests.operator.test_modelservice_e2e import modelservice


def invalid_spec(cp: ControlPlane, kind: str, namespace: str, name: str, type_: str) -> Any:
    obj = get_json(cp, kind, name, "-n", namespace) or {}
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == type_ and cond["status"] == "False" and cond["reason"] == "InvalidSpec":
            return cond
    return None


def warnings(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    listing = get_json(
        cp, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return [
        e
        for e in (listing or {}).get("items", [])
        if e["reason"] == reason and e["type"] == "Warning"
    ]


def test_a_modelservice_whose_name_cannot_name_its_service(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    # A valid name for the ModelService (a DNS subdomain), not for a Service (a DNS label).
    manifest = modelservice("my.model")
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    what = f"an InvalidSpec condition on my.model\n{operator.log()}"
    cond = wait_until(
        lambda: invalid_spec(cp, "modelservice", namespace, "my.model", "Ready"), 30, what
    )
    assert 'metadata.name "my.model" cannot name the Service' in cond["message"]
    assert "DNS-1035" in cond["message"]
    events = wait_until(lambda: warnings(cp, namespace, "my.model", "InvalidSpec"), 30, "its Event")
    assert events[0]["message"] == cond["message"]
    assert events[0]["involvedObject"]["kind"] == "ModelService"
    # kopf was told it is permanent (no retries), and nothing was half made.
    wait_until(
        lambda: "failed permanently: InvalidSpec: metadata.name" in operator.log(),
        30,
        f"kopf's permanent failure\n{operator.log()}",
    )
    assert get_json(cp, "deployment", "my.model", "-n", namespace) is None
    assert get_json(cp, "configmap", "my.model-runtime", "-n", namespace) is None


def test_a_finetunejob_whose_children_the_api_server_refuses(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    # Fine for a FineTuneJob (up to 253 characters), too long for the labels of its children.
    name = "tune-" + "x" * 64
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(finetunejob(name)))
    what = f"an InvalidSpec condition on {name}\n{operator.log()}"
    cond = wait_until(
        lambda: invalid_spec(cp, "finetunejob", namespace, name, "Succeeded"), 30, what
    )
    assert cond["message"].startswith("the API server refused ")
    assert "must be no more than 63" in cond["message"]
    events = wait_until(lambda: warnings(cp, namespace, name, "InvalidSpec"), 30, "its Event")
    assert events[0]["message"] == cond["message"]
    assert get_json(cp, "job", name, "-n", namespace) is None


@pytest.mark.asyncio
async def test_the_api_servers_refusals_are_classified(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube = Kube(load_credentials(str(control_plane.admin_kubeconfig)))
    try:
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": namespace},
            "data": {"k": "1"},
        }
        stale = (await kube.apply(configmap))["metadata"]["resourceVersion"]
        await kube.merge_patch("v1", "ConfigMap", namespace, "c", {"data": {"k": "2"}})
        # A write based on what someone else has changed since: another try may succeed.
        update = {"metadata": {"resourceVersion": stale}, "data": {"k": "3"}}
        with pytest.raises(ApiError) as conflict:
            await kube.merge_patch("v1", "ConfigMap", namespace, "c", update)
        assert conflict.value.status == 409
        temporary = to_kopf(conflict.value, retry=2)
        assert isinstance(temporary, kopf.TemporaryError)
        assert temporary.delay == 4.0
        # An object the API server refuses as built: the same request fails the same way.
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "my.model", "namespace": namespace},
            "spec": {"ports": [{"port": 80}]},
        }
        with pytest.raises(ApiError) as refused:
            await kube.apply(service)
        assert refused.value.status == 422
        assert isinstance(to_kopf(refused.value, retry=0), kopf.PermanentError)
    finally:
        await kube.close()
