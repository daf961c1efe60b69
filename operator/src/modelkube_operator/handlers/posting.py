"""Events on the custom resources: condition transitions, and a spec that cannot work."""

from collections.abc import Mapping
from typing import Any

import kopf

from modelkube_operator.reconcilers.errors import SpecError


def post_transitions(body: kopf.Body, transitions: list[dict[str, Any]]) -> None:
    """Each condition that changed becomes an Event on the resource."""
    for cond in transitions:
        post = kopf.info if cond["status"] == "True" or cond["type"] != "Ready" else kopf.warn
        message = f"{cond['type']}={cond['status']}: {cond['message']}"
        post(body, reason=cond["reason"], message=message)


def post_spec_error(body: kopf.Body, error: SpecError) -> None:
    """A Warning Event the first time the status says so (not on every retry or restart)."""
    if error.fresh:
        kopf.warn(body, reason=error.reason, message=error.message)


def describe(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{body['kind']} {meta.get('namespace')}/{meta.get('name')}"
