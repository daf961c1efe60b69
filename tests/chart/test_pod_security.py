"""Every pod we ship meets Pod Security Standard "restricted" with a read-only root filesystem:
the chart's (operator and `helm test` pod) and the operator's (runtime and training pods)."""

from pathlib import Path
from typing import Any

import pytest
from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.runtime import build_deployment
from modelkube_operator.builders.training import build_job

from tests.chart.helm import CI_VALUES, pod_specs, render
from tests.chart.restricted import violations

MODELSERVICE = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 1)
FINETUNEJOB = Owner("modelkube.io/v1alpha1", "FineTuneJob", "run-1", "team-a", "uid-2", 1)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_chart_pods_are_restricted(values: Path) -> None:
    pods = pod_specs(render(values))
    assert any(name.startswith("Deployment/") for name in pods)
    for name, pod in pods.items():
        assert violations(pod) == [], name


def _runtime_pod(**spec: Any) -> dict[str, Any]:
    model = ModelServiceSpec.model_validate({"model": {"uri": "pvc://models/llama"}, **spec})
    plan = AdapterPlan(ready=(("tuned", "pvc://adapters/tuned"),), claims=("adapters",))
    pod: dict[str, Any] = build_deployment(MODELSERVICE, model, plan, "h")["spec"]["template"]
    return pod["spec"]  # type: ignore[no-any-return]


def _training_pod() -> dict[str, Any]:
    spec = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"uri": "builtin://tiny"},
            "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
            "output": {"uri": "pvc://adapters/run-1"},
        }
    )
    pod: dict[str, Any] = build_job(FINETUNEJOB, spec)["spec"]["template"]["spec"]
    return pod


def test_operator_built_pods_are_restricted() -> None:
    keys = {"auth": {"apiKeysSecretRef": {"name": "keys", "key": "list"}}}
    for pod in (_runtime_pod(), _runtime_pod(**keys), _training_pod()):
        assert violations(pod) == []


def test_the_checker_catches_each_breach() -> None:
    pod = _training_pod()
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    context = pod["containers"][0]["securityContext"]
    context.update(allowPrivilegeEscalation=True, readOnlyRootFilesystem=False, runAsUser=0)
    context["capabilities"] = {"drop": [], "add": ["SYS_ADMIN"]}
    context["seccompProfile"] = {"type": "Unconfined"}
    found = " ".join(violations(pod))
    for breach in (
        "hostNetwork",
        "hostPath",
        "allowPrivilegeEscalation",
        "uid 0",
        "seccompProfile",
        "drop ALL",
        "SYS_ADMIN",
        "writable",
    ):
        assert breach in found
