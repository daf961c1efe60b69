"""Events on the custom resources: condition transitions, and a spec that cannot work.

Posted through the operator's own client rather than kopf's poster: kopf's `info` obeys the
operator's WARNING posting level (so Normal transitions were dropped), and its poster retries
an Event for a namespace being deleted nine times, logging an error each time.
"""

import datetime
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from modelkube_operator import metrics
from modelkube_operator.k8s.client import ApiError, Kube
from modelkube_operator.reconcilers.errors import SpecError

logger = logging.getLogger(__name__)
COMPONENT = "modelkube-operator"
# Conditions whose True is bad news; for the others (Ready, Succeeded, ...) False is.
_BAD_WHEN_TRUE = frozenset({"Degraded", "Failed"})
_INFORMATIONAL = frozenset({"Progressing", "Running", "APIKeysRequired"})
# What was last posted per (object uid, condition type): reconciles that race on one change
# (an owner's event and its Deployment's) would otherwise post it twice. Bounded: the oldest
# entries go first.
_POSTED_MAX = 20_000
_posted: dict[tuple[str, str], tuple[str, str]] = {}


def event_type(cond: Mapping[str, Any]) -> str:
    bad = cond["status"] == ("True" if cond["type"] in _BAD_WHEN_TRUE else "False")
    return "Warning" if bad and cond["type"] not in _INFORMATIONAL else "Normal"


def event_object(
    body: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime.datetime
) -> dict[str, Any]:
    """A core/v1 Event about `body` (pure)."""
    meta = body["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post(kube: Kube, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    try:
        await kube.create(event_object(body, type_, reason, message, now))
    except ApiError as exc:
        if "being terminated" in exc.message:
            return  # its namespace is going away, and the Event with it
        logger.warning("cannot post a %s Event on %s: %s", reason, describe(body), exc)


async def post_transitions(
    kube: Kube, body: Mapping[str, Any], transitions: list[dict[str, Any]]
) -> None:
    """Each condition that changed becomes an Event on the resource, once."""
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
        await post(kube, body, event_type(cond), cond["reason"], message)


async def post_spec_error(kube: Kube, body: Mapping[str, Any], error: SpecError) -> None:
    """A Warning Event the first time the status says so (not on every retry or restart)."""
    if error.fresh:
        await post(kube, body, "Warning", error.reason, error.message)


async def reconciled(
    kube: Kube, kind: str, body: Mapping[str, Any], run: Awaitable[list[dict[str, Any]]]
) -> None:
    """Run one reconcile, counted in the metrics, and post what it changed as Events: its
    condition transitions, or the spec error it raises (raised on)."""
    with metrics.reconciling(kind):
        try:
            transitions = await run
        except SpecError as exc:
            await post_spec_error(kube, body, exc)
            raise
    await post_transitions(kube, body, transitions)


def describe(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{body['kind']} {meta.get('namespace')}/{meta.get('name')}"
