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


def test_a_modelservice_whose_deployment_the_api_server_refuses(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    # The CRD accepts hugepages as a resource name; a pod asking for them with no limit is
    # refused when the operator applies the Deployment.
    manifest = modelservice("huge")
    manifest["spec"]["runtime"] = {"resources": {"requests": {"hugepages-2Mi": "2Mi"}}}
    cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))
    what = f"an InvalidSpec condition on huge\n{operator.log()}"
    cond = wait_until(
        lambda: invalid_spec(cp, "modelservice", namespace, "huge", "Ready"), 30, what
    )
    assert cond["message"].startswith("the API server refused ")
    assert "Limit must be set for non overcommitable resources" in cond["message"]
    events = wait_until(lambda: warnings(cp, namespace, "huge", "InvalidSpec"), 30, "its Event")
    assert events[0]["message"] == cond["message"]
    assert events[0]["involvedObject"]["kind"] == "ModelService"
    # kopf was told it is permanent (no retries).
    wait_until(
        lambda: "failed permanently: InvalidSpec" in operator.log(),
        30,
        f"kopf's permanent failure\n{operator.log()}",
    )
    assert get_json(cp, "deployment", "huge", "-n", namespace) is None


def test_names_that_cannot_name_the_children_are_refused_at_admission(
    control_plane: ControlPlane, namespace: str
) -> None:
    # Once checked by the operator after the fact (a condition and an Event), now by the CRD:
    # nothing is ever half made.
    for manifest in (modelservice("my.model"), finetunejob("tune-" + "x" * 64)):
        result = control_plane.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=False
        )
        assert result.returncode != 0
        assert "metadata.name must be a DNS" in result.stderr


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
