"""Proxy mode: a ModelService serving a hosted model through the runtime, with no local model."""

import pytest
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan, plan_adapters
from modelkube_operator.builders.common import Owner
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from pydantic import ValidationError

OWNER = Owner("modelkube.io/v1alpha1", "ModelService", "chat", "team-a", "uid-1", 3)
GROQ = {
    "provider": "groq",
    "model": "llama-3.1-8b-instant",
    "apiKeySecretRef": {"name": "groq", "key": "apiKey"},
}


def upstream(**extra: object) -> ModelServiceSpec:
    return ModelServiceSpec.model_validate({"upstream": {**GROQ, **extra}})


def test_runtime_forwards_to_the_provider_with_the_key_from_its_secret() -> None:
    s = upstream()
    container = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = container["args"]
    assert args[:7] == [
        "serve",
        "--upstream-provider",
        "$(MODELKUBE_UPSTREAM_PROVIDER)",
        "--upstream-model",
        "$(MODELKUBE_UPSTREAM_MODEL)",
        "--served-model-name",
        "$(MODELKUBE_SERVED_MODEL_NAME)",
    ]
    assert "--model" not in args
    assert "--upstream-base-url" not in args
    key = {"name": "groq", "key": "apiKey"}
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELKUBE_UPSTREAM_API_KEY"] == {
        "name": "MODELKUBE_UPSTREAM_API_KEY",
        "valueFrom": {"secretKeyRef": key},
    }
    assert "MODELKUBE_MODEL" not in env
    data = build_configmap(OWNER, s, AdapterPlan(), ProgramPlan())["data"]
    assert data["MODELKUBE_UPSTREAM_PROVIDER"] == "groq"
    assert data["MODELKUBE_UPSTREAM_MODEL"] == "llama-3.1-8b-instant"
    assert data["MODELKUBE_SERVED_MODEL_NAME"] == "chat"
    assert "MODELKUBE_MODEL" not in data


def test_custom_provider_passes_its_base_url_and_no_key_means_no_env() -> None:
    s = upstream(provider="custom", baseURL="https://llm.example.com/v1", apiKeySecretRef=None)
    container = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = container["args"]
    assert args[args.index("--upstream-base-url") + 1] == "$(MODELKUBE_UPSTREAM_BASE_URL)"
    assert "MODELKUBE_UPSTREAM_API_KEY" not in {e["name"] for e in container["env"]}
    data = build_configmap(OWNER, s, AdapterPlan(), ProgramPlan())["data"]
    assert data["MODELKUBE_UPSTREAM_BASE_URL"] == "https://llm.example.com/v1"


def test_a_private_ca_bundle_is_mounted_and_trusted() -> None:
    s = upstream(
        provider="custom",
        baseURL="https://gateway.internal/v1",
        caBundleRef={"name": "corp-ca", "key": "ca.crt"},
    )
    pod = build_deployment(OWNER, s, AdapterPlan(), "h")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--upstream-ca-file") + 1] == "/etc/modelkube/upstream-ca/ca.pem"
    [volume] = [v for v in pod["volumes"] if v["name"] == "upstream-ca"]
    items = [{"key": "ca.crt", "path": "ca.pem"}]
    assert volume["configMap"] == {"name": "corp-ca", "items": items}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["upstream-ca"]["mountPath"] == "/etc/modelkube/upstream-ca"
    assert mounts["upstream-ca"]["readOnly"] is True
    plain = build_deployment(OWNER, upstream(), AdapterPlan(), "h")["spec"]["template"]["spec"]
    assert "--upstream-ca-file" not in plain["containers"][0]["args"]
    assert "upstream-ca" not in {v["name"] for v in plain["volumes"]}


def test_a_new_upstream_model_rolls_the_pods() -> None:
    a = settings_hash(build_configmap(OWNER, upstream(), AdapterPlan(), ProgramPlan()))
    b = upstream(model="llama-3.3-70b-versatile")
    assert a != settings_hash(build_configmap(OWNER, b, AdapterPlan(), ProgramPlan()))


def test_proxy_mode_mounts_no_model_claims_and_serves_no_adapters() -> None:
    s = upstream()
    labelled = {
        "metadata": {"name": "api-job", "labels": {"modelkube.io/model-service": "chat"}},
        "spec": {"output": {"uri": "pvc://adapters/api-job"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "adapterURI": "pvc://adapters/api-job",
        },
    }
    plan = plan_adapters("chat", s, {"api-job": labelled})
    assert plan == AdapterPlan()
    pod = build_deployment(OWNER, s, plan, "h")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]


def test_base_url_keeps_its_camel_case_spelling() -> None:
    s = upstream(provider="custom", baseURL="http://proxy:4000")
    assert s.model_dump(by_alias=True, exclude_none=True)["upstream"]["baseURL"] == (
        "http://proxy:4000"
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"model": {"uri": "builtin://tiny"}, "upstream": GROQ},
        {"upstream": {**GROQ, "baseURL": "ftp://x"}},
        {"upstream": {**GROQ, "provider": "anthropic"}},
    ],
)
def test_the_model_rejects_what_the_schema_rejects(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ModelServiceSpec.model_validate(body)
