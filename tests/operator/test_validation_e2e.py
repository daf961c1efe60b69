"""Invalid manifests are rejected by the API server itself, with a message naming the field."""

from typing import Any

import pytest
import yaml

from tests.controlplane.cluster import ControlPlane

MS = {"model": {"uri": "builtin://tiny"}}
GROQ = {"provider": "groq", "model": "llama-3.1-8b-instant"}
QA = {"name": "qa", "signature": "question -> answer"}
HOSTED = "spec.upstream serves a hosted model"
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
]


@pytest.mark.parametrize(("kind", "spec", "message"), CASES)
def test_api_server_rejects_invalid_manifest(
    control_plane: ControlPlane, kind: str, spec: dict[str, Any], message: str
) -> None:
    manifest = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "invalid", "namespace": "default"},
        "spec": spec,
    }
    result = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=yaml.safe_dump(manifest),
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert message in result.stderr
