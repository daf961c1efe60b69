"""Proxy mode on the real control plane: the example's Deployment forwards to the provider,
with the API key from its Secret and no local model."""

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import REPO, OperatorProcess, get_json, wait_until
from tests.operator.test_modelservice_e2e import ready


def test_upstream_example_runs_the_runtime_in_proxy_mode(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    example = REPO / "examples" / "modelservice-upstream.yaml"
    cp.kubectl("apply", "-n", namespace, "-f", str(example))
    ms = wait_until(
        lambda: ready(cp, namespace, "groq-llama"), 30, f"groq-llama Ready\n{operator.log()}"
    )
    assert ms["status"]["servedModels"] == ["groq-llama"]
    deployment = get_json(cp, "deployment", "groq-llama", "-n", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert "--model" not in args
    assert args[args.index("--upstream-provider") + 1] == "$(MODELKUBE_UPSTREAM_PROVIDER)"
    assert args[args.index("--upstream-model") + 1] == "$(MODELKUBE_UPSTREAM_MODEL)"
    assert args[args.index("--served-model-name") + 1] == "$(MODELKUBE_SERVED_MODEL_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELKUBE_UPSTREAM_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "groq-api-key", "key": "apiKey"}
    }
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    config = get_json(cp, "configmap", "groq-llama-runtime", "-n", namespace)
    assert config is not None
    assert config["data"]["MODELKUBE_UPSTREAM_PROVIDER"] == "groq"
    assert config["data"]["MODELKUBE_UPSTREAM_MODEL"] == "llama-3.1-8b-instant"
    assert "MODELKUBE_MODEL" not in config["data"]
