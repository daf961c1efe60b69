"""Events on the custom resources: condition transitions, and a spec that cannot work."""

from collections.abc import Mapping
from typing import Any

import kopf

from modelkube_operator.reconcilers.errors import SpecError

# Conditions whose True is bad news; for the others (Ready, Succeeded, ...) False is.
_BAD_WHEN_TRUE = frozenset({"Degraded", "Failed"})
# What was last posted per (object uid, condition type): reconciles that race on one change
# (an owner's event and its Deployment's) would otherwise post it twice. Bounded: the oldest
# entries go first.
_POSTED_MAX = 20_000
_posted: dict[tuple[str, str], tuple[str, str]] = {}


def event_type(cond: Mapping[str, Any]) -> str:
    bad = cond["status"] == ("True" if cond["type"] in _BAD_WHEN_TRUE else "False")
    informational = cond["type"] in ("Progressing", "Running", "APIKeysRequired")
    return "Warning" if bad and not informational else "Normal"


def post_transitions(body: kopf.Body, transitions: list[dict[str, Any]]) -> None:
    """Each condition that changed becomes an Event on the resource, once.

    `kopf.event`, not `kopf.info`: the operator's posting level is WARNING (kopf's own log
    lines stay out of Events), and `kopf.info` obeys it, so Normal transitions were lost.
    """
    uid = str(body.get("metadata", {}).get("uid", ""))
    for cond in transitions:
        key, seen = (uid, cond["type"]), (cond["status"], cond["reason"])
        if _posted.get(key) == seen:
            continue
        _posted.pop(key, None)
        _posted[key] = seen
        if len(_posted) > _POSTED_MAX:
            del _posted[next(iter(_posted))]
        message = f"{cond['type']}={cond['status']}: {cond['message']}"
        kopf.event(body, type=event_type(cond), reason=cond["reason"], message=message)


def post_spec_error(body: kopf.Body, error: SpecError) -> None:
    """A Warning Event the first time the status says so (not on every retry or restart)."""
    if error.fresh:
        kopf.warn(body, reason=error.reason, message=error.message)


def describe(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{body['kind']} {meta.get('namespace')}/{meta.get('name')}"
