"""The chart's gateway: off by default; on, a Deployment running `modelkube gateway` with the
values' flags, a Service on its API, and RBAC to watch and scale ModelServices, nothing more."""

import pytest

from tests.chart.helm import CHART, NAMESPACE, of_kind, render


def test_the_gateway_is_off_by_default() -> None:
    docs = render(None)
    assert not [d for d in docs if d["metadata"]["name"].endswith("-gateway")]


def test_the_gateway_runs_with_its_flags_service_and_rbac() -> None:
    docs = render(CHART / "ci" / "gateway-values.yaml")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    pod = deployments["modelkube-gateway"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["modelkube"]
    assert container["args"][0] == "gateway"
    assert "--namespace=team-a" in container["args"]
    assert "--api-keys-file=/etc/modelkube/keys/keys" in container["args"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert "--drain-seconds=30" in container["args"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 5
    assert pod["serviceAccountName"] == "modelkube-gateway"
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    gateway = services["modelkube-gateway"]["spec"]
    assert gateway["selector"]["app.kubernetes.io/component"] == "gateway"
    assert services["modelkube"]["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "ClusterRole")}
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in roles["modelkube-gateway"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("modelkube.io", "modelservices"): ["get", "list", "watch"],
        ("modelkube.io", "modelservices/scale"): ["get", "patch", "update"],
        ("discovery.k8s.io", "endpointslices"): ["get", "list", "watch"],
    }
    bindings = {b["metadata"]["name"]: b for b in of_kind(docs, "ClusterRoleBinding")}
    assert bindings["modelkube-gateway"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelkube-gateway", "namespace": NAMESPACE}
    ]


def test_the_gateway_front_is_native_unless_set_and_only_the_two_are_taken() -> None:
    def args(*sets: str) -> list[str]:
        docs = render(CHART / "ci" / "gateway-values.yaml", *sets)
        deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
        [container] = deployments["modelkube-gateway"]["spec"]["template"]["spec"]["containers"]
        found: list[str] = container["args"]
        return found

    assert "--front=native" in args()
    assert "--front=uvicorn" in args("gateway.front=uvicorn")
    with pytest.raises(AssertionError, match="at '/gateway/front': value must be one of"):
        render(CHART / "ci" / "gateway-values.yaml", "gateway.front=rust")
