"""Custom resources checked against their CRD's openAPIV3Schema, as strictly as
kubernetes-validate checks Kubernetes' own kinds: types, enums, required fields, and no field
the schema does not name (the API server would silently prune those)."""

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.controlplane.binaries import MODULES, binary_dir


def prometheus_operator_crds() -> Path:
    """The ServiceMonitor and PrometheusRule CRDs, copied out of the Prometheus Operator's Go
    module by tests.controlplane.binaries."""
    module = next(m for m in MODULES if m.directory == "prometheus-operator")
    directory = binary_dir(module)
    if not all((directory / name).exists() for name in module.binaries()):
        raise RuntimeError("the Prometheus Operator's CRDs are missing: run `make controlplane`")
    return directory


def schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in `directory`."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            found[(api_version, crd["spec"]["names"]["kind"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return found


def violations(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    return errors + _unknown_fields(doc, schema, "")


def _unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields") or where == ".metadata":
        return []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            e
            for i, v in enumerate(value)
            for e in _unknown_fields(v, schema["items"], f"{where}[{i}]")
        ]
    if not isinstance(value, dict) or "properties" not in schema:
        return []
    found = []
    for key, item in value.items():
        if key not in schema["properties"]:
            found.append(f"{where}.{key}: not in the schema")
        else:
            found += _unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    return found
