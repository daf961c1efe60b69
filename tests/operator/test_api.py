"""The CRDs are generated from the pydantic models, and the checked-in YAML matches them."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from modelkube_operator.api.crd import KINDS, MODELSERVICE, build_crd, structural_schema
from modelkube_operator.api.finetunejob import FineTuneJobStatus
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.cli import crd_files
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crds_match_the_models() -> None:
    for name, text in crd_files().items():
        path = REPO / "crds" / name
        assert path.exists(), f"{path} missing: run `modelkube crds --write crds/`"
        assert path.read_text() == text, f"{path} drifted: run `modelkube crds --write crds/`"


def test_schema_is_structural() -> None:
    def walk(node: dict[str, object], where: str) -> None:
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, where
        assert "type" in node or "x-kubernetes-preserve-unknown-fields" in node, where
        for name, sub in (node.get("properties") or {}).items():  # type: ignore[attr-defined]
            walk(sub, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")  # type: ignore[arg-type]

    walk(structural_schema(ModelServiceSpec), "spec")


def test_modelservice_crd_has_scale_printer_columns_and_names() -> None:
    crd = build_crd(MODELSERVICE)
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == [
        "Ready",
        "Model",
        "Replicas",
        "Age",
    ]
    # `kubectl get -o wide` adds the rest.
    assert [c["name"] for c in columns if c.get("priority")] == ["Engine", "Image", "URL", "Reason"]
    assert {c["name"]: c["jsonPath"] for c in columns}["Replicas"] == ".status.replicasSummary"
    assert crd["spec"]["names"]["shortNames"] == ["ms"]
    assert crd["spec"]["names"]["categories"] == ["modelkube"]


def test_example_manifests_are_valid_specs() -> None:
    for path in (REPO / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ModelService":
                ModelServiceSpec.model_validate(doc["spec"])


def test_models_reject_what_the_schema_rejects() -> None:
    with pytest.raises(ValidationError):
        ModelServiceSpec.model_validate({"model": {"uri": "s3://bucket/x"}})
    with pytest.raises(ValidationError):
        ModelServiceSpec.model_validate({"model": {"uri": "builtin://tiny"}, "replicas": -1})


def test_status_field_names_follow_the_design() -> None:
    status = FineTuneJobStatus.model_validate({"adapterURI": "pvc://a/b", "startTime": "t"})
    assert status.model_dump(by_alias=True)["adapterURI"] == "pvc://a/b"
    with pytest.raises(ValidationError):
        FineTuneJobStatus.model_validate({"adapterUri": "pvc://a/b"})


def _undescribed(node: dict[str, Any], where: str) -> list[str]:
    missing = []
    for name, sub in (node.get("properties") or {}).items():
        path = f"{where}.{name}"
        if "description" not in sub and path not in (".apiVersion", ".kind", ".metadata"):
            missing.append(path)
        missing += _undescribed(sub, path)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            missing += _undescribed(node[key], f"{where}[]")
    return missing


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    for info in KINDS:
        root = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _undescribed(root, "") == [], info.kind
