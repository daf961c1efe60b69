"""The chart renders valid Kubernetes objects for every ci/ value set, with what the values ask."""

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from modelkube_operator.rbac import RULES

from tests.chart import crd_schema
from tests.chart.helm import CHART, CI_VALUES, KUBE_VERSION, NAMESPACE, helm, of_kind, render

REPO = CHART.parents[1]


def ci(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint_strict_passes(values: Path) -> None:
    helm("lint", "--strict", str(CHART), "--values", str(values), "--kube-version", KUBE_VERSION)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_object_validates_against_its_schema(values: Path) -> None:
    """Kubernetes' kinds against the 1.36 schemas (strict: unknown fields fail too); the
    Prometheus Operator's ServiceMonitor and PrometheusRule against their own CRDs."""
    custom = crd_schema.schemas(crd_schema.prometheus_operator_crds())
    for doc in render(values):
        schema = custom.get((doc["apiVersion"], doc["kind"]))
        if schema is not None:
            assert crd_schema.violations(doc, schema) == [], doc["kind"]
        else:
            assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True) == "1.36"


def test_the_crd_check_finds_typos_and_wrong_types() -> None:
    [monitor] = of_kind(render(ci("monitoring")), "ServiceMonitor")
    schema = crd_schema.schemas(crd_schema.prometheus_operator_crds())[
        ("monitoring.coreos.com/v1", "ServiceMonitor")
    ]
    broken = {**monitor, "spec": {**monitor["spec"], "jobLable": "x", "endpoints": "metrics"}}
    found = " ".join(crd_schema.violations(broken, schema))
    assert ".spec.jobLable: not in the schema" in found
    assert "is not of type 'array'" in found


def test_defaults_install_crds_kept_on_uninstall_and_watch_every_namespace() -> None:
    docs = render(ci("default"))
    crds = of_kind(docs, "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {
        "modelservices.modelkube.io",
        "finetunejobs.modelkube.io",
    }
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        source = yaml.safe_load(
            (REPO / "crds" / f"modelkube.io_{crd['spec']['names']['plural']}.yaml").read_text()
        )
        assert crd["spec"] == source["spec"]
    container = _operator_container(docs)
    assert container["image"] == "ghcr.io/modelkube/operator:0.1.0"
    assert container["command"] == ["modelkube"]
    assert container["args"] == [
        "operator",
        "--all-namespaces",
        "--liveness",
        "http://0.0.0.0:8081/healthz",
        "--metrics-port",
        "8080",
    ]
    [deployment] = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    [pdb] = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_operator_is_told_the_images_it_stamps_into_pods() -> None:
    """The runtime, CUDA runtime and trainer images are values, passed as the operator's env
    (images.py reads them), so a private registry serves every pod the operator makes."""

    def images(*sets: str) -> dict[str, str]:
        env = _operator_container(render(None, *sets))["env"]
        return {e["name"]: e["value"] for e in env if e["name"].endswith("_IMAGE")}

    assert images() == {
        "MODELKUBE_RUNTIME_IMAGE": "ghcr.io/modelkube/runtime:0.1.0",
        "MODELKUBE_RUNTIME_CUDA_IMAGE": "ghcr.io/modelkube/runtime:0.1.0-cuda",
        "MODELKUBE_TRAINER_IMAGE": "ghcr.io/modelkube/runtime:0.1.0",
    }
    assert images(
        "images.runtime.repository=registry.local/mk/runtime",
        "images.runtimeCuda.tag=7-cuda",
        "images.trainer.repository=registry.local/mk/trainer",
    ) == {
        "MODELKUBE_RUNTIME_IMAGE": "registry.local/mk/runtime:0.1.0",
        "MODELKUBE_RUNTIME_CUDA_IMAGE": "ghcr.io/modelkube/runtime:7-cuda",
        "MODELKUBE_TRAINER_IMAGE": "registry.local/mk/trainer:0.1.0",
    }


def test_namespaced_watch_passes_each_namespace_and_pins_the_digest() -> None:
    container = _operator_container(render(ci("namespaced")))
    assert container["args"][:5] == ["operator", "--namespace", "team-a", "--namespace", "team-b-*"]
    assert container["image"].startswith("ghcr.io/modelkube/operator@sha256:")


def test_crds_disabled_renders_no_crds_and_uses_the_given_account() -> None:
    docs = render(ci("crds-disabled"))
    assert not of_kind(docs, "CustomResourceDefinition")
    assert not of_kind(docs, "ServiceAccount")
    [deployment] = of_kind(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "modelkube-operator"


def test_servicemonitor_scrapes_the_metrics_port_of_the_operator_service() -> None:
    docs = render(ci("monitoring"))
    [monitor] = of_kind(docs, "ServiceMonitor")
    [service] = of_kind(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in ports
    [policy] = of_kind(docs, "NetworkPolicy")
    metrics, health = policy["spec"]["ingress"]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["from"][0]["namespaceSelector"]  # ci: only the monitoring namespace
    [test_pod] = of_kind(docs, "Pod")
    allowed = health["from"][0]["podSelector"]["matchLabels"].items()
    assert allowed <= test_pod["metadata"]["labels"].items()


def test_the_service_selects_the_operator_and_not_the_test_pod() -> None:
    docs = render(ci("default"))
    [service] = of_kind(docs, "Service")
    [deployment] = of_kind(docs, "Deployment")
    [test_pod] = of_kind(docs, "Pod")
    selector = service["spec"]["selector"].items()
    assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= test_pod["metadata"]["labels"].items()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_rbac_names_every_verb_and_resource(values: Path) -> None:
    for role in [*of_kind(render(values), "ClusterRole"), *of_kind(render(values), "Role")]:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {rule}"
            assert rule["verbs"] and rule["resources"], rule


def test_operator_clusterrole_is_rbac_py_and_bound_to_its_account() -> None:
    docs = render(ci("default"))
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "ClusterRole")}
    assert roles["modelkube"]["rules"] == RULES
    [binding] = of_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "modelkube"
    [account] = of_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    view = roles["modelkube-view"]["metadata"]["labels"]
    assert view["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert (
        "rbac.authorization.k8s.io/aggregate-to-view"
        not in roles["modelkube-edit"]["metadata"]["labels"]
    )


def _operator_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    [deployment] = of_kind(docs, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = container
    return found
