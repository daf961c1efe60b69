"""Invalid manifests are rejected by the API server itself, with a message naming the field."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import wait_until

MS = {"model": {"uri": "builtin://tiny"}}
GROQ = {"provider": "groq", "model": "llama-3.1-8b-instant"}
QA = {"name": "qa", "signature": "question -> answer"}
HOSTED = "spec.upstream serves a hosted model"
PARENT = "must not contain a '..' path segment"
QUANTITY = "must be a non-negative Kubernetes quantity"
SECRET_REF = {"secretKeyRef": {"name": "hf", "key": "token"}}
FTJ = {
    "baseModel": {"uri": "builtin://tiny"},
    "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
    "output": {"uri": "pvc://adapters/run"},
}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("ModelService", {}, "set exactly one of spec.model and spec.upstream"),
    ("ModelService", {**MS, "upstream": GROQ}, "set exactly one of spec.model and spec.upstream"),
    (
        "ModelService",
        {"upstream": {"provider": "custom", "model": "m"}},
        "spec.upstream.baseURL is required when provider is custom",
    ),
    (
        "ModelService",
        {"upstream": {**GROQ, "baseURL": "ftp://host"}},
        "spec.upstream.baseURL",
    ),
    (
        "ModelService",
        {"upstream": GROQ, "adapters": [{"name": "a", "uri": "pvc://x/a"}]},
        f"{HOSTED}: spec.adapters are not allowed with it",
    ),
    (
        "ModelService",
        {"upstream": GROQ, "fineTuningAPI": {"enabled": True, "outputClaim": "adapters"}},
        f"{HOSTED}: spec.fineTuningAPI is not allowed with it",
    ),
    ("ModelService", {**MS, "programs": [QA, QA]}, "program names must be unique"),
    (
        "ModelService",
        {**MS, "programs": [{**QA, "module": "react"}]},
        'spec.programs[0].module: Unsupported value: "react"',
    ),
    ("ModelService", {"model": {"uri": "s3://bucket/model"}}, "spec.model.uri"),
    ("ModelService", {**MS, "replicas": -1}, "spec.replicas"),
    (
        "ModelService",
        {**MS, "autoscaling": {"minReplicas": 5, "maxReplicas": 2, "target": 4}},
        "minReplicas must not exceed maxReplicas",
    ),
    (
        "ModelService",
        {**MS, "autoscaling": {"maxReplicas": 2, "target": 0}},
        "spec.autoscaling.target",
    ),
    (
        "ModelService",
        {**MS, "autoscaling": {"maxReplicas": 2, "target": 3, "metric": "gpu"}},
        'spec.autoscaling.metric: Unsupported value: "gpu"',
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "a", "uri": "pvc://x/a"}, {"name": "a", "uri": "pvc://x/b"}]},
        "adapter names must be unique",
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "a", "uri": "pvc://x/a", "fineTuneJobRef": {"name": "j"}}]},
        "set exactly one of uri or fineTuneJobRef",
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "a"}]},
        "set exactly one of uri or fineTuneJobRef",
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "Bad_Name", "uri": "pvc://x/a"}]},
        "spec.adapters[0].name",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"maxConcurrentRequests": 0}},
        "spec.runtime.maxConcurrentRequests",
    ),
    ("ModelService", {**MS, "auth": {}}, "spec.auth.apiKeysSecretRef: Required value"),
    ("ModelService", {**MS, "replica": 2}, 'unknown field "spec.replica"'),
    ("FineTuneJob", {**FTJ, "method": "qlora"}, 'spec.method: Unsupported value: "qlora"'),
    (
        "FineTuneJob",
        {**FTJ, "dataset": {"configMapRef": {"name": "d", "key": "k"}, "uri": "pvc://d/x"}},
        "set exactly one of configMapRef or uri",
    ),
    (
        "FineTuneJob",
        {**FTJ, "hyperparameters": {"learningRate": "fast"}},
        "spec.hyperparameters.learningRate",
    ),
    (
        "FineTuneJob",
        {**FTJ, "hyperparameters": {"iterations": 0}},
        "spec.hyperparameters.iterations",
    ),
    ("FineTuneJob", {**FTJ, "output": {"uri": "s3://bucket/out"}}, "spec.output.uri"),
    # Resources: the quantities, names and request <= limit the Deployment or Job would refuse.
    (
        "ModelService",
        {**MS, "runtime": {"resources": {"requests": {"cpu": "two"}}}},
        f'spec.runtime.resources.requests[cpu]: Invalid value: "two": {QUANTITY}, '
        "e.g. 500m, 2 or 4Gi",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"resources": {"limits": {"memory": "4 GiB"}}}},
        f'spec.runtime.resources.limits[memory]: Invalid value: "4 GiB": {QUANTITY}',
    ),
    (
        "ModelService",
        {**MS, "runtime": {"resources": {"requests": {"gpu": "1"}}}},
        "spec.runtime.resources.requests: Invalid value: resource names are cpu, "
        "memory, ephemeral-storage, hugepages-<size> or a domain-qualified name",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}}},
        "spec.runtime.resources: Invalid value: a request must not exceed its limit",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"resources": {"requests": {"memory": "-1Gi"}}}},
        'spec.trainer.resources.requests[memory]: Invalid value: "-1Gi": must be a '
        "non-negative Kubernetes quantity",
    ),
    # Names: the derived names (Service, Job, pod labels) must be valid, so the name must be.
    (
        "ModelService",
        {**MS, "autoscaling": {"maxReplicas": 3, "target": 80, "metric": "cpu"}},
        "autoscaling.metric cpu scales on CPU utilization of the request: "
        "set spec.runtime.resources.requests.cpu",
    ),
    (
        "ModelService",
        {
            **MS,
            "autoscaling": {"maxReplicas": 3, "target": 80, "metric": "cpu"},
            "runtime": {"resources": {"requests": {"memory": "1Gi"}}},
        },
        "set spec.runtime.resources.requests.cpu",
    ),
    # Claims and paths: a claim is mounted by name, a path must stay inside it.
    ("ModelService", {"model": {"uri": "pvc://Models/llama"}}, "spec.model.uri"),
    (
        "ModelService",
        {"model": {"uri": "pvc://models/../../etc/passwd"}},
        f'spec.model.uri: Invalid value: "pvc://models/../../etc/passwd": {PARENT}',
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "a", "uri": "pvc://my_claim/a"}]},
        "spec.adapters[0].uri",
    ),
    (
        "ModelService",
        {**MS, "adapters": [{"name": "a", "uri": "pvc://adapters/a/.."}]},
        f'spec.adapters[0].uri: Invalid value: "pvc://adapters/a/..": {PARENT}',
    ),
    (
        "ModelService",
        {**MS, "fineTuningAPI": {"enabled": True, "outputClaim": "claim.with.dots"}},
        "spec.fineTuningAPI.outputClaim",
    ),
    ("FineTuneJob", {**FTJ, "output": {"uri": "pvc://Adapters/run"}}, "spec.output.uri"),
    (
        "FineTuneJob",
        {**FTJ, "output": {"uri": "pvc://adapters/../other-team"}},
        f'spec.output.uri: Invalid value: "pvc://adapters/../other-team": {PARENT}',
    ),
    (
        "FineTuneJob",
        {**FTJ, "dataset": {"uri": "pvc://data/../../x"}},
        f'spec.dataset.uri: Invalid value: "pvc://data/../../x": {PARENT}',
    ),
    (
        "FineTuneJob",
        {**FTJ, "dataset": {"configMapRef": {"name": "data", "key": "../../x"}}},
        "spec.dataset.configMapRef.key",
    ),
    (
        "FineTuneJob",
        {**FTJ, "baseModel": {"uri": "pvc://models/llama/../../../x"}},
        f'spec.baseModel.uri: Invalid value: "pvc://models/llama/../../../x": {PARENT}',
    ),
    # Env: the runtime's own variables, and where a value comes from.
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "MODELKUBE_MODEL", "value": "hf://x/y"}]}},
        'spec.runtime.env[0].name: Invalid value: "MODELKUBE_MODEL": '
        "MODELKUBE_* and HF_HOME are set by the operator",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "HF_HOME", "value": "/data"}]}},
        'spec.runtime.env[0].name: Invalid value: "HF_HOME": MODELKUBE_* and HF_HOME are set '
        "by the operator",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"env": [{"name": "MODELKUBE_CACHE_DIR", "value": "/x"}]}},
        "spec.trainer.env[0].name",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        "spec.runtime.env[1]: Duplicate value",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "1TOKEN", "value": "x"}]}},
        "spec.runtime.env[0].name",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "T", "value": "x", "valueFrom": SECRET_REF}]}},
        "spec.runtime.env[0]: Invalid value: set value or valueFrom, not both",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"env": [{"name": "T", "valueFrom": {}}]}},
        "spec.runtime.env[0].valueFrom: Invalid value: set exactly one of "
        "secretKeyRef or configMapKeyRef",
    ),
    (
        "ModelService",
        {
            **MS,
            "runtime": {
                "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]
            },
        },
        "spec.runtime.env[0].valueFrom.secretKeyRef.key",
    ),
    # Secret keys become file names under a mount: no '/'.
    (
        "ModelService",
        {**MS, "auth": {"apiKeysSecretRef": {"name": "keys", "key": "dir/keys"}}},
        "spec.auth.apiKeysSecretRef.key",
    ),
    (
        "ModelService",
        {"upstream": {**GROQ, "apiKeySecretRef": {"name": "groq", "key": "../key"}}},
        "spec.upstream.apiKeySecretRef.key",
    ),
    # Programs and hyperparameters the runtime or trainer would only refuse at run time.
    (
        "ModelService",
        {**MS, "programs": [{"name": "qa", "signature": "question, answer"}]},
        'spec.programs[0].signature: Invalid value: "question, answer": '
        "must be 'inputs -> outputs', e.g. 'question -> answer'",
    ),
    (
        "ModelService",
        {**MS, "programs": [{"name": "qa", "signature": "question ->  "}]},
        "must be 'inputs -> outputs'",
    ),
    (
        "FineTuneJob",
        {**FTJ, "hyperparameters": {"learningRate": "0"}},
        'spec.hyperparameters.learningRate: Invalid value: "0": must be greater than 0',
    ),
    (
        "FineTuneJob",
        {**FTJ, "hyperparameters": {"learningRate": "0.0e5"}},
        'spec.hyperparameters.learningRate: Invalid value: "0.0e5": must be greater than 0',
    ),
    # Pod settings.
    (
        "ModelService",
        {**MS, "runtime": {"rollout": {"maxSurge": 0, "maxUnavailable": 0}}},
        "spec.runtime.rollout: Invalid value: maxSurge and maxUnavailable must not both be 0",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}},
        "value must be empty when operator is Exists",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"tolerations": [{"key": "gpu", "tolerationSeconds": 60}]}},
        "tolerationSeconds needs effect NoExecute",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"tolerations": [{"effect": "NoWhere"}]}},
        'spec.trainer.tolerations[0].effect: Unsupported value: "NoWhere"',
    ),
    (
        "ModelService",
        {**MS, "runtime": {"affinity": {"nodeAfinity": {}}}},
        'unknown field "spec.runtime.affinity.nodeAfinity"',
    ),
    (
        "ModelService",
        {**MS, "runtime": {"imagePullSecrets": [{"name": "Registry_Creds"}]}},
        "spec.runtime.imagePullSecrets[0].name",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"priorityClassName": "High Priority"}},
        "spec.runtime.priorityClassName",
    ),
    (
        "ModelService",
        {**MS, "runtime": {"nodeSelector": {"pool": "gpu nodes"}}},
        "spec.runtime.nodeSelector.pool",
    ),
    ("ModelService", {**MS, "runtime": {"drainSeconds": -1}}, "spec.runtime.drainSeconds"),
    (
        "ModelService",
        {**MS, "runtime": {"modelCache": {"claimName": "cache", "sizeLimit": "10Gi"}}},
        "spec.runtime.modelCache: Invalid value: sizeLimit is for the emptyDir cache: leave it "
        "out with claimName",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"modelCache": {"claimName": "Cache_1"}}},
        "spec.trainer.modelCache.claimName",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"activeDeadlineSeconds": 0}},
        "spec.trainer.activeDeadlineSeconds",
    ),
    (
        "FineTuneJob",
        {**FTJ, "trainer": {"backoffLimit": -1}},
        "spec.trainer.backoffLimit",
    ),
]

NAME_MESSAGES = {
    "ModelService": "metadata.name must be a DNS-1035 label of at most 63 characters (it names "
    "the Service)",
    "FineTuneJob": "metadata.name must be a DNS label of at most 63 characters (it names the Job "
    "and labels its pods)",
}
NAME_CASES: list[tuple[str, str]] = [
    ("ModelService", "my.model"),  # a valid object name, but no valid Service name
    ("ModelService", "7b-chat"),  # a Service name starts with a letter
    ("ModelService", "m" * 64),
    ("FineTuneJob", "run.1"),
    ("FineTuneJob", "j" * 64),
]
SPECS: dict[str, dict[str, Any]] = {"ModelService": MS, "FineTuneJob": FTJ}


def _apply(cp: ControlPlane, kind: str, name: str, spec: dict[str, Any]) -> str:
    """What `kubectl apply` tells the user (a server-side dry run: nothing is stored)."""
    manifest = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    result = cp.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


@pytest.mark.parametrize(("kind", "spec", "message"), CASES)
def test_api_server_rejects_invalid_manifest(
    control_plane: ControlPlane, kind: str, spec: dict[str, Any], message: str
) -> None:
    stderr = _apply(control_plane, kind, "invalid", spec)
    assert message in stderr, stderr


@pytest.mark.parametrize(("kind", "name"), NAME_CASES)
def test_api_server_rejects_names_that_make_invalid_children(
    control_plane: ControlPlane, kind: str, name: str
) -> None:
    stderr = _apply(control_plane, kind, name, SPECS[kind])
    assert NAME_MESSAGES[kind] in stderr, stderr


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("ModelService", MS),
        (
            "ModelService",
            {
                **MS,
                "autoscaling": {"maxReplicas": 3, "target": 80, "metric": "cpu"},
                "runtime": {
                    "resources": {"requests": {"cpu": "500m", "nvidia.com/gpu": "1"}},
                    "env": [{"name": "HF_TOKEN", "valueFrom": SECRET_REF}, {"name": "A"}],
                    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {}},
                    "rollout": {"maxSurge": 1},
                },
            },
        ),
        ("FineTuneJob", {**FTJ, "hyperparameters": {"learningRate": "2e-4"}}),
    ],
)
def test_api_server_accepts_valid_edges(
    control_plane: ControlPlane, kind: str, spec: dict[str, Any]
) -> None:
    """The rules above refuse only what they should: these pass (a dry run stores nothing)."""
    manifest = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "valid-" + "x" * 56, "namespace": "default"},
        "spec": spec,
    }
    done = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("modelservice.spec", "What to serve and how"),
        ("modelservice.status", "What the operator observed"),
        ("modelservice.spec.runtime.env.name", "not MODELKUBE_* nor HF_HOME"),
        ("modelservice.spec.runtime.env.value", "The variable's value"),
        ("modelservice.spec.runtime.image", "the operator's configured image"),
        ("finetunejob.spec.trainer.ttlSecondsAfterFinished", "does not train again"),
    ],
)
def test_kubectl_explain_describes_the_fields(
    control_plane: ControlPlane, field: str, words: str
) -> None:
    def explained() -> str:
        done = control_plane.kubectl("explain", field, check=False)
        return done.stdout if done.returncode == 0 else ""

    # The API server publishes a new CRD's OpenAPI a moment after it is established.
    text = wait_until(explained, 30, f"kubectl explain {field}")
    assert words in " ".join(text.split())


def test_a_finetunejob_takes_only_suspend_as_an_edit(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    manifest = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "frozen", "namespace": namespace},
        "spec": FTJ,
    }
    cp.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    for patch in (
        {"spec": {"method": "dora"}},
        {"spec": {"hyperparameters": {"iterations": 7}}},
        {"spec": {"trainer": {"image": "mine:2"}}},
    ):
        result = cp.kubectl(
            "patch", "finetunejob", "frozen", "-n", namespace, "--type=merge",
            "-p", json.dumps(patch), check=False,
        )  # fmt: skip
        assert result.returncode != 0, patch
        assert "spec is immutable except suspend" in result.stderr, result.stderr
    suspend = cp.kubectl(
        "patch", "finetunejob", "frozen", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"suspend": true}}',
    )  # fmt: skip
    assert suspend.returncode == 0


def test_kubectl_scale_is_refused_under_autoscaling_and_works_without(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    for name, extra in (
        ("fixed", {}),
        ("scaled", {"autoscaling": {"maxReplicas": 3, "target": 4}}),
    ):
        manifest = {
            "apiVersion": "modelkube.io/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**MS, **extra},
        }
        cp.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    assert cp.kubectl("scale", "ms/fixed", "-n", namespace, "--replicas=3").returncode == 0
    refused = cp.kubectl("scale", "ms/scaled", "-n", namespace, "--replicas=3", check=False)
    assert refused.returncode != 0
    assert "spec.replicas cannot change while spec.autoscaling is set" in refused.stderr


def _dry_run(cp: ControlPlane, spec: dict[str, Any], kind: str = "ModelService") -> tuple[int, str]:
    manifest = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "generated", "namespace": "default"},
        "spec": spec,
    }
    stdin = json.dumps(manifest)
    done = cp.kubectl("apply", "--dry-run=server", "-f", "-", stdin=stdin, check=False)
    return done.returncode, done.stderr


ENGINES = ("mlx", "llamacpp", "auto")
any_json = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()


def _whole(value: Any) -> bool:
    """A JSON integer as the API server reads one: 3.0 is 3."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and float(value).is_integer()


# This round's new ModelService fields, with generated values: what the schema allows is
# accepted (null too: apply drops it, so the default holds), and anything else is refused by
# the API server naming the field.
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(engine=st.sampled_from(ENGINES) | any_json, idle=st.integers(-5, 700_000) | any_json)
def test_generated_engine_and_idle_seconds_are_accepted_or_refused_by_name(
    control_plane: ControlPlane, engine: Any, idle: Any
) -> None:
    scaling = {"minReplicas": 0, "maxReplicas": 2, "target": 4, "idleSeconds": idle}
    code, stderr = _dry_run(control_plane, {**MS, "runtime": {"engine": engine}})
    if engine is None or engine in ENGINES:
        assert code == 0, stderr
    else:
        assert code != 0 and "spec.runtime.engine" in stderr, stderr
    code, stderr = _dry_run(control_plane, {**MS, "autoscaling": scaling})
    valid = idle is None or (_whole(idle) and 1 <= idle <= 604800)
    if valid:
        assert code == 0, stderr
    else:
        assert code != 0 and "spec.autoscaling.idleSeconds" in stderr, stderr


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(delay=st.integers(-5, 4000) | any_json)
def test_generated_scale_down_delays_are_accepted_or_refused_by_name(
    control_plane: ControlPlane, delay: Any
) -> None:
    scaling = {"maxReplicas": 2, "target": 4, "scaleDownDelaySeconds": delay}
    code, stderr = _dry_run(control_plane, {**MS, "autoscaling": scaling})
    if delay is None or (_whole(delay) and 0 <= delay <= 3600):
        assert code == 0, stderr
    else:
        assert code != 0 and "spec.autoscaling.scaleDownDelaySeconds" in stderr, stderr


# FineTuneJob's spec.trainer.backoffLimit, with generated values, the same way.
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(limit=st.integers(-5, 200) | any_json)
def test_generated_backoff_limits_are_accepted_or_refused_by_name(
    control_plane: ControlPlane, limit: Any
) -> None:
    code, stderr = _dry_run(
        control_plane, {**FTJ, "trainer": {"backoffLimit": limit}}, "FineTuneJob"
    )
    if limit is None or (_whole(limit) and 0 <= limit <= 100):
        assert code == 0, stderr
    else:
        assert code != 0 and "spec.trainer.backoffLimit" in stderr, stderr
