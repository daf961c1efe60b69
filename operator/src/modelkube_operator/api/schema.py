"""Helpers for models whose JSON schema becomes a Kubernetes structural schema."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A claim name the operator mounts: a DNS label (it becomes part of a mount path), 63 at most.
CLAIM = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# `pvc://claim/path`, the path relative to the claim's root.
PVC_URI = rf"^pvc://{CLAIM}/[^/].*$"
# No `..` segment: a path must stay inside its claim once mounted.
NO_PARENT = ("!('/' + self + '/').contains('/../')", "must not contain a '..' path segment")
# A Secret's or ConfigMap's data key, as the API server accepts them: never `.`, `..` or a
# name starting with `..`, so a key mounted as a file stays inside its volume.
DATA_KEY = r"^(\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*)$"


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules: (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}
