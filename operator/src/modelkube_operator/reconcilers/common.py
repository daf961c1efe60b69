"""What both reconcilers share: the owner, status writes, per-object serialisation."""

import asyncio
import datetime
import weakref
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from modelkube_operator.builders.common import Obj, Owner
from modelkube_operator.k8s.client import FIELD_MANAGER, ApiError, Kube
from modelkube_operator.reconcilers.errors import INVALID_SPEC, SpecError, rejected, says_new
from modelkube_operator.status.conditions import Cond, merge_conditions, transitions

# Weak values: a lock stays in the table only while a reconcile holds it or waits for it, so
# the table never outgrows the reconciles in flight (a deleted object leaves nothing behind).
# A lock still held when its object is deleted and re-created by the same name keeps
# serialising the new object's reconciles behind the old one's.
_locks: "weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock]" = (
    weakref.WeakValueDictionary()
)


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(
        api_version=body["apiVersion"],
        kind=body["kind"],
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=meta.get("generation", 0),
    )


def spec_error(exc: ValidationError) -> str:
    """The first validation error as one line naming the field, for an InvalidSpec condition."""
    err = exc.errors()[0]
    return f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def changed_by_others(child: Mapping[str, Any]) -> bool:
    """Whether someone else wrote the object (not its status) since our last apply: a kubectl
    edit, patch, scale or apply. Without an apply of ours on record, it counts as changed.

    A child's own events (ours, a controller's status) then cost no re-apply; managedFields
    times have one-second resolution, so a tie counts as a change, and so does no time.
    """
    entries = [
        e
        for e in child.get("metadata", {}).get("managedFields") or []
        if e.get("subresource") != "status"
    ]
    ours = [e.get("time", "") for e in entries if e.get("manager") == FIELD_MANAGER]
    if not ours:
        return True
    last = max(ours)
    # A write through the scale subresource records no time; a forced apply of ours takes its
    # fields back, and an entry owning nothing is dropped, so it cannot re-trigger forever.
    return any(
        e.get("manager") != FIELD_MANAGER and (not e.get("time") or e["time"] >= last)
        for e in entries
    )


def lock_for(owner: Owner) -> asyncio.Lock:
    """Handlers and child events may reconcile one object at once; serialise them. Hold the
    lock returned while it is needed: the table keeps it only as long as someone does."""
    key = (owner.kind, owner.namespace, owner.name)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    return lock


def locks_held() -> int:
    """How many objects have a lock in the table now (for tests and debugging)."""
    return len(_locks)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def write_status(
    kube: Kube,
    owner: Owner,
    schema: type[BaseModel],
    previous: Mapping[str, Any],
    conds: list[Cond],
    fields: Obj,
) -> list[Obj]:
    """Apply the status if it changed; return the conditions that transitioned."""
    old_conditions = list(previous.get("conditions", []))
    merged = merge_conditions(old_conditions, conds, owner.generation, now())
    status = {**fields, "conditions": merged, "observedGeneration": owner.generation}
    schema.model_validate(status)  # a field the CRD does not declare fails here, not in the cluster
    unchanged = all(previous.get(k) == v for k, v in status.items() if k != "conditions")
    if unchanged and _same(old_conditions, merged):
        return []
    await kube.apply(
        {
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "metadata": {"name": owner.name, "namespace": owner.namespace},
            "status": status,
        },
        subresource="status",
    )
    return transitions(old_conditions, merged)


async def invalid_spec(
    kube: Kube,
    owner: Owner,
    schema: type[BaseModel],
    previous: Mapping[str, Any],
    condition: str,
    message: str,
) -> SpecError:
    """Say in status that the spec cannot work, and return the error to raise: the handlers
    then stop retrying it until the spec changes."""
    fresh = says_new(previous, condition, message)
    await write_status(
        kube, owner, schema, previous, [Cond(condition, False, INVALID_SPEC, message)], {}
    )
    return SpecError(message, fresh)


async def apply_child(
    kube: Kube,
    owner: Owner,
    schema: type[BaseModel],
    previous: Mapping[str, Any],
    condition: str,
    obj: Obj,
) -> Obj:
    """Apply a child; one the API server refuses as built (the spec passed its schema but
    implies an object that cannot exist, e.g. a name over 63 characters in its labels) becomes
    an InvalidSpec condition and the SpecError to raise."""
    try:
        return await kube.apply(obj)
    except ApiError as exc:
        if not rejected(exc):
            raise
        kind, name = obj["kind"], obj["metadata"]["name"]
        message = f"the API server refused {kind} {name}: {exc.message}"
        raise await invalid_spec(kube, owner, schema, previous, condition, message) from exc


def _same(old: list[Obj], new: list[Obj]) -> bool:
    keys = ("type", "status", "reason", "message", "observedGeneration")
    return [[c.get(k) for k in keys] for c in old] == [[c.get(k) for k in keys] for c in new]
