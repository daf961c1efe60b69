"""kopf registration: thin handlers that call the reconcilers. Importing this registers them."""

import asyncio
import contextlib
import copy
import logging
from collections.abc import Collection, Mapping
from typing import Any, cast

import kopf

from modelkube_operator import metrics
from modelkube_operator.api import GROUP, VERSION
from modelkube_operator.builders.common import MANAGED_BY
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials
from modelkube_operator.reconcilers.finetunejob import reconcile_finetunejob
from modelkube_operator.reconcilers.handoff import handoff_state, serves_job
from modelkube_operator.reconcilers.modelservice import reconcile_child, reconcile_modelservice
from modelkube_operator.reconcilers.programs import referenced_configmaps, source_state
from modelkube_operator.reconcilers.resync import OwnerKey, not_ready, out_of_sync, owner_key

RESYNC_S = 60.0
WORKER_LIMIT = 200
WORKER_IDLE_S = 0.5
OURS = {"app.kubernetes.io/managed-by": MANAGED_BY}
_RECONCILERS = ("ModelService", "FineTuneJob")
OwnersIndex = kopf.Index[OwnerKey, dict[str, Any]]
ChildrenIndex = kopf.Index[OwnerKey, str]
JobsIndex = kopf.Index[str, dict[str, Any]]
SourcesIndex = kopf.Index[tuple[str, str], str]
logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf's bookkeeping lives in annotations under our domain, not in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Only warnings become Events by themselves: at INFO kopf would post one per handler run
    # per object, an API call each. Condition transitions are still posted (kopf.info/warn).
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # One worker task per object with events is kopf's default; a burst of hundreds of new
    # objects would hold hundreds of handler coroutines and bodies at once. An idle worker
    # holds its slot, so it leaves soon instead of kopf's 5 s.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE_S
    memo.kube = Kube(load_credentials())
    metrics.resources.owners = kwargs["owners"]
    port = memo.get("metrics_port", 0)
    memo.metrics = await metrics.serve(port) if port else None
    memo.resync = asyncio.create_task(
        _resync_forever(memo.kube, kwargs["owners"], kwargs["children"], kwargs["jobs"])
    )


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.resync.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.resync
    if memo.metrics is not None:
        await memo.metrics.cleanup()
    await memo.kube.close()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    creds = load_credentials()
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        insecure=creds.insecure,
        token=creds.token,
        certificate_path=creds.cert_file,
        private_key_path=creds.key_file,
        default_namespace=creds.namespace,
    )


async def _resync_forever(
    kube: Kube, owners: OwnersIndex, children: ChildrenIndex, jobs: JobsIndex
) -> None:
    """A safety net: child events already correct drift within seconds. It reads only the
    indices, so it costs nothing while everything is in sync. An owner is reconciled only when
    two passes in a row find it out of sync: one that kopf is still working through (a burst)
    is left to kopf, not reconciled twice. A ModelService not Ready is reconciled every pass,
    which refreshes its status from the Deployment."""
    seen_before: set[OwnerKey] = set()
    while True:
        await asyncio.sleep(RESYNC_S)
        present = {key: list(kinds) for key, kinds in children.items()}
        snapshot = [owner for store in owners.values() for owner in store]
        stale = {_key(owner): owner for owner in out_of_sync(snapshot, present)}
        metrics.count_out_of_sync(stale.values())
        due = [owner for key, owner in stale.items() if key in seen_before]
        due += [owner for owner in not_ready(snapshot) if _key(owner) not in stale]
        seen_before = set(stale)
        for owner in due:
            try:
                await _reconcile(kube, kopf.Body(cast(kopf.RawBody, owner)), present, jobs)
            except Exception:  # one broken object must not stop the others' resync
                logger.exception("resync of %s/%s failed", owner["kind"], owner["metadata"]["name"])


def _key(body: Mapping[str, Any]) -> OwnerKey:
    meta = body["metadata"]
    return owner_key(body["kind"], meta.get("namespace") or "", meta.get("name") or "")


async def _reconcile(
    kube: Kube,
    body: kopf.Body,
    present: Mapping[OwnerKey, Collection[str]],
    jobs: JobsIndex,
) -> None:
    key = _key(body)
    with metrics.reconciling(body["kind"]):
        if body["kind"] == "ModelService":
            in_namespace = _jobs_in(jobs, key[1])
            present_kinds = present.get(key, [])
            transitions = await reconcile_modelservice(kube, body, present_kinds, in_namespace)
        else:
            transitions = await reconcile_finetunejob(kube, body)
    _post(body, transitions)


def _jobs_in(jobs: JobsIndex, namespace: str) -> dict[str, Mapping[str, Any]]:
    return {job["metadata"]["name"]: job for job in jobs.get(namespace, [])}


def _post(body: kopf.Body, transitions: list[dict[str, Any]]) -> None:
    """Each condition that changed becomes an Event on the resource."""
    for cond in transitions:
        post = kopf.info if cond["status"] == "True" or cond["type"] != "Ready" else kopf.warn
        message = f"{cond['type']}={cond['status']}: {cond['message']}"
        post(body, reason=cond["reason"], message=message)


@kopf.on.resume(GROUP, VERSION, "modelservices")
@kopf.on.create(GROUP, VERSION, "modelservices")
@kopf.on.update(GROUP, VERSION, "modelservices")
@kopf.on.resume(GROUP, VERSION, "finetunejobs")
@kopf.on.create(GROUP, VERSION, "finetunejobs")
@kopf.on.update(GROUP, VERSION, "finetunejobs")
async def reconcile(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    # Measured on the 500-object burst: plain kopf event handlers filtered to pending specs
    # cost more CPU per object than kopf's change detection, so this stays.
    children: ChildrenIndex = kwargs["children"]
    await _reconcile(memo.kube, body, children, kwargs["jobs"])


@kopf.index(GROUP, VERSION, "finetunejobs")
async def jobs(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """FineTuneJobs by namespace, as much as a ModelService's adapters need of them."""
    meta = body.metadata
    kept = {"name": meta.name, "labels": dict(meta.labels)}
    job = {"metadata": kept, "spec": copy.deepcopy(dict(body.spec))}
    job["status"] = copy.deepcopy(dict(body.status))
    return {meta.namespace or "": job}


@kopf.on.event(GROUP, VERSION, "finetunejobs")
async def finetunejob_changed(
    body: kopf.Body, memo: kopf.Memo, type: str | None, **kwargs: Any
) -> None:
    """A FineTuneJob finished, failed or went away: the ModelServices that serve its adapter
    reconcile, so a finished fine-tune is handed to the runtime at once."""
    meta = body.metadata
    key = (meta.namespace or "", meta.name or "")
    handed: dict[tuple[str, str], Any] = memo.setdefault("handoff", {})
    if type == "DELETED":
        handed.pop(key, None)  # forgotten, and its services reconcile without it
    else:
        state = handoff_state(body)
        if handed.get(key) == state:
            return
        handed[key] = state
    owners: OwnersIndex = kwargs["owners"]
    services = [
        owner
        for store in owners.values()
        for owner in store
        if owner["kind"] == "ModelService"
        and owner["metadata"]["namespace"] == key[0]
        and serves_job(owner, key[1], dict(meta.labels))
    ]
    for service in services:
        await _reconcile(
            memo.kube, kopf.Body(cast(kopf.RawBody, service)), kwargs["children"], kwargs["jobs"]
        )


@kopf.index(GROUP, VERSION, "modelservices")
async def program_sources(body: kopf.Body, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, ConfigMap) → the ModelServices whose programs are compiled into it."""
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    return {(namespace, configmap): name for configmap in referenced_configmaps(body)}


# Every ConfigMap not made by the operator: kopf lists them all already (its label filters
# apply in the operator, not in the watch), so this adds no watch; the index lookup first makes
# the unreferenced ones cost nothing more.
@kopf.on.event("", "v1", "configmaps", labels={"app.kubernetes.io/managed-by": kopf.ABSENT})
async def program_source_changed(
    body: kopf.Body, memo: kopf.Memo, type: str | None, **kwargs: Any
) -> None:
    """A ConfigMap holding a compiled program changed or went away: the ModelServices using it
    reconcile, and their runtimes reload the programs without a restart."""
    sources: SourcesIndex = kwargs["program_sources"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if key not in sources:
        return
    seen: dict[tuple[str, str], str] = memo.setdefault("program_sources", {})
    if type == "DELETED":
        seen.pop(key, None)
    else:
        state = source_state(body)
        if seen.get(key) == state:
            return  # a label or annotation edit, or a resync of the watch
        seen[key] = state
    owners: OwnersIndex = kwargs["owners"]
    for service in sorted(set(sources[key])):
        for owner in owners.get(("ModelService", key[0], service), []):
            await _reconcile(
                memo.kube, kopf.Body(cast(kopf.RawBody, owner)), kwargs["children"], kwargs["jobs"]
            )


@kopf.index(GROUP, VERSION, "modelservices")
@kopf.index(GROUP, VERSION, "finetunejobs")
async def owners(body: kopf.Body, **_: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The custom resources in memory, so a child's event finds its owner without a GET.

    Only what the reconcilers read is kept: managedFields and kopf's annotations (one holds a
    whole copy of the spec) would double the memory and the copying on every event.
    """
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


@kopf.index("apps", "v1", "deployments", labels=OURS)
@kopf.index("", "v1", "services", labels=OURS)
@kopf.index("", "v1", "configmaps", labels=OURS)
@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
@kopf.index("policy", "v1", "poddisruptionbudgets", labels=OURS)
@kopf.index("batch", "v1", "jobs", labels=OURS)
@kopf.index("", "v1", "serviceaccounts", labels=OURS)
@kopf.index("rbac.authorization.k8s.io", "v1", "roles", labels=OURS)
@kopf.index("rbac.authorization.k8s.io", "v1", "rolebindings", labels=OURS)
# Optional: kopf serves it once KEDA's CRD exists (it watches the CRDs), and warns until then.
@kopf.index("keda.sh", "v1alpha1", "scaledobjects", labels=OURS)
async def children(body: kopf.Body, **_: Any) -> dict[OwnerKey, str] | None:
    """Which children exist, by owner: the resync and the optional-child deletes read it."""
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("apiVersion") == f"{GROUP}/{VERSION}" and ref["kind"] in _RECONCILERS:
            return {
                owner_key(ref["kind"], body.metadata.namespace or "", ref["name"]): body["kind"]
            }
    return None


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("", "v1", "services", labels=OURS)
@kopf.on.event("", "v1", "configmaps", labels=OURS)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OURS)
@kopf.on.event("batch", "v1", "jobs", labels=OURS)
@kopf.on.event("keda.sh", "v1alpha1", "scaledobjects", labels=OURS)
async def child_changed(body: kopf.Body, memo: kopf.Memo, type: str | None, **kwargs: Any) -> None:
    """A child changed or vanished (drift, a rollout, a finished Job): reconcile its owner."""
    owners: OwnersIndex = kwargs["owners"]
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("apiVersion") != f"{GROUP}/{VERSION}" or ref["kind"] not in _RECONCILERS:
            continue
        for owner in owners.get((ref["kind"], body.metadata.namespace or "", ref["name"]), []):
            if owner["metadata"]["uid"] != ref["uid"] or owner["metadata"].get("deletionTimestamp"):
                continue
            with metrics.reconciling(ref["kind"]):
                if ref["kind"] == "ModelService":
                    jobs = _jobs_in(kwargs["jobs"], body.metadata.namespace or "")
                    deleted = type == "DELETED"
                    transitions = await reconcile_child(memo.kube, owner, body, deleted, jobs)
                else:
                    transitions = await reconcile_finetunejob(memo.kube, owner)
            _post(kopf.Body(cast(kopf.RawBody, owner)), transitions)
