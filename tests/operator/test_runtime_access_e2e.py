"""The fine-tuning API on a ModelService: the runtime gets an account that can do exactly that."""

from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import OperatorProcess, get_json, wait_until


def service(enabled: bool, claim: str = "adapters") -> dict[str, Any]:
    return {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "tuner"},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "fineTuningAPI": {"enabled": enabled, "outputClaim": claim},
        },
    }


def apply(cp: ControlPlane, namespace: str, obj: dict[str, Any], check: bool = True) -> Any:
    return cp.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(obj), check=check)


def can_i(cp: ControlPlane, namespace: str, verb: str, resource: str) -> bool:
    who = f"--as=system:serviceaccount:{namespace}:tuner-runtime"
    result = cp.kubectl("auth", "can-i", verb, resource, "-n", namespace, who, check=False)
    return result.stdout.strip() == "yes"


def test_the_fine_tuning_api_grants_the_runtime_exactly_what_it_needs(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    rejected = apply(cp, namespace, service(True, claim=""), check=False)
    assert rejected.returncode != 0
    assert "fineTuningAPI.outputClaim is required" in rejected.stderr

    apply(cp, namespace, service(True))
    binding = wait_until(
        lambda: get_json(cp, "rolebinding", "tuner-runtime", "-n", namespace), 30, "RoleBinding"
    )
    assert binding["subjects"][0]["name"] == "tuner-runtime"
    deployment = wait_until(lambda: get_json(cp, "deployment", "tuner", "-n", namespace), 30, "dep")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tuner-runtime"
    assert pod["automountServiceAccountToken"] is True
    args = pod["containers"][0]["args"]
    assert args[args.index("--fine-tuning-output-claim") + 1] == "adapters"
    assert can_i(cp, namespace, "create", "finetunejobs.modelkube.io")
    assert can_i(cp, namespace, "create", "configmaps")
    assert not can_i(cp, namespace, "delete", "finetunejobs.modelkube.io")
    assert not can_i(cp, namespace, "get", "secrets")
    assert not can_i(cp, "default", "create", "finetunejobs.modelkube.io")

    apply(cp, namespace, service(False))
    wait_until(
        lambda: get_json(cp, "rolebinding", "tuner-runtime", "-n", namespace) is None,
        30,
        f"the RoleBinding removed\n{operator.log()}",
    )
    assert get_json(cp, "serviceaccount", "tuner-runtime", "-n", namespace) is None
    deployment = get_json(cp, "deployment", "tuner", "-n", namespace) or {}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "default"
