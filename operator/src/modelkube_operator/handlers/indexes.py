"""kopf's in-memory indexes: what each holds of an object, and lookups in them.

They let a child's event find its owner, and the resync judge every owner, without a GET.
"""

import copy
from collections.abc import Iterator, Mapping
from typing import Any, cast

import kopf

from modelkube_operator.api import GROUP, VERSION
from modelkube_operator.reconcilers.programs import referenced_configmaps
from modelkube_operator.reconcilers.resync import OwnerKey, owner_key

OWNER_KINDS = ("ModelService", "FineTuneJob")
OwnersIndex = kopf.Index[OwnerKey, dict[str, Any]]
ChildrenIndex = kopf.Index[OwnerKey, str]
JobsIndex = kopf.Index[str, dict[str, Any]]
SourcesIndex = kopf.Index[tuple[str, str], str]


def owner_entry(body: kopf.Body) -> dict[OwnerKey, dict[str, Any]]:
    """A custom resource, as much of it as the reconcilers read: managedFields and kopf's
    annotations (one holds a whole copy of the spec) would double the memory and the copying
    on every event."""
    meta = body.metadata
    kept = {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")}
    owner = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": kept,
        "spec": copy.deepcopy(dict(body.spec)),
        "status": copy.deepcopy(dict(body.status)),
    }
    return {owner_key(body["kind"], meta.namespace or "", meta.name or ""): owner}


def child_entry(body: kopf.Body) -> dict[OwnerKey, str] | None:
    """A child's kind under its owner's key (None: not one of ours)."""
    for ref in _owner_refs(body):
        return {owner_key(ref["kind"], body.metadata.namespace or "", ref["name"]): body["kind"]}
    return None


def job_entry(body: kopf.Body) -> dict[str, dict[str, Any]]:
    """A FineTuneJob under its namespace, as much as a ModelService's adapters need of it."""
    meta = body.metadata
    kept = {"name": meta.name, "labels": dict(meta.labels)}
    job = {"metadata": kept, "spec": copy.deepcopy(dict(body.spec))}
    job["status"] = copy.deepcopy(dict(body.status))
    return {meta.namespace or "": job}


def source_entries(body: kopf.Body) -> dict[tuple[str, str], str]:
    """(namespace, ConfigMap) → the ModelService whose programs are compiled into it."""
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    return {(namespace, configmap): name for configmap in referenced_configmaps(body)}


def key_of(body: Mapping[str, Any]) -> OwnerKey:
    meta = body["metadata"]
    return owner_key(body["kind"], meta.get("namespace") or "", meta.get("name") or "")


def jobs_in(jobs: JobsIndex, namespace: str) -> dict[str, Mapping[str, Any]]:
    return {job["metadata"]["name"]: job for job in jobs.get(namespace, [])}


def owners_of(child: kopf.Body, owners: OwnersIndex) -> list[dict[str, Any]]:
    """The live owners of a child: the same uid as its reference (not a namesake re-created
    since), and not being deleted. A list, read at once: kopf changes its indexes while the
    caller awaits, and a generator suspended inside one raised "dictionary changed size during
    iteration" (a namespace deleted under the operator)."""
    namespace = child.metadata.namespace or ""
    return [
        owner
        for ref in _owner_refs(child)
        for owner in owners.get(owner_key(ref["kind"], namespace, ref["name"]), [])
        if owner["metadata"]["uid"] == ref["uid"] and not owner["metadata"].get("deletionTimestamp")
    ]


def as_body(owner: Mapping[str, Any]) -> kopf.Body:
    """An index entry as a body, for the reconcilers and kopf's Event posting."""
    return kopf.Body(cast(kopf.RawBody, owner))


def _owner_refs(body: kopf.Body) -> Iterator[Mapping[str, Any]]:
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref.get("kind") in OWNER_KINDS:
            yield ref
