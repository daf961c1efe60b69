"""Every kopf handler, registered when this module is imported.

Each is a thin function: kopf's keyword arguments it reads, typed and named (indexes by their
ids), then `**_` for the rest; it calls a plain function of the module for its kind or job
and maps what that raises to kopf's retry policy (handlers.errors).
"""

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from modelkube_operator.api import GROUP, VERSION
from modelkube_operator.builders.common import MANAGED_BY
from modelkube_operator.handlers import children as child_events
from modelkube_operator.handlers import finetunejob, modelservice, startup
from modelkube_operator.handlers.errors import namespace_going, to_kopf
from modelkube_operator.handlers.indexes import (
    ChildrenIndex,
    JobsIndex,
    OwnersIndex,
    SourcesIndex,
    child_entry,
    job_entry,
    owner_entry,
    source_entries,
)
from modelkube_operator.handlers.state import state_of
from modelkube_operator.reconcilers.resync import OwnerKey

OURS = {"app.kubernetes.io/managed-by": MANAGED_BY}
# kopf records progress under the handler's id, so it stays what it was before the split.
RECONCILE_ID = "reconcile"


def takes_indexes(fn: Callable[..., Awaitable[None]]) -> Any:
    """kopf passes each index as a keyword argument named by the index's id, but its handler
    protocols list only kopf's own arguments, so mypy finds a handler that names an index
    incompatible with them. Said once here rather than silenced at every decorator."""
    return fn


@kopf.on.startup()
@takes_indexes
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
    **_: Any,
) -> None:
    startup.configure(settings)
    memo.state = await startup.start(memo.get("metrics_port", 0), owners, children, jobs)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await startup.stop(state_of(memo))


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return startup.connection()


# Measured on the 500-object burst: plain kopf event handlers filtered to pending specs cost
# more CPU per object than kopf's change detection, so these are resume/create/update.
@kopf.on.resume(GROUP, VERSION, "modelservices", id=RECONCILE_ID)
@kopf.on.create(GROUP, VERSION, "modelservices", id=RECONCILE_ID)
@kopf.on.update(GROUP, VERSION, "modelservices", id=RECONCILE_ID)
@takes_indexes
async def reconcile_modelservice(
    body: kopf.Body,
    memo: kopf.Memo,
    retry: int,
    children: ChildrenIndex,
    jobs: JobsIndex,
    **_: Any,
) -> None:
    try:
        await modelservice.reconcile(state_of(memo), body, children, jobs)
    except Exception as exc:
        _raise_classified(exc, retry)


@kopf.on.resume(GROUP, VERSION, "finetunejobs", id=RECONCILE_ID)
@kopf.on.create(GROUP, VERSION, "finetunejobs", id=RECONCILE_ID)
@kopf.on.update(GROUP, VERSION, "finetunejobs", id=RECONCILE_ID)
async def reconcile_finetunejob(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await finetunejob.reconcile(state_of(memo), body)
    except Exception as exc:
        _raise_classified(exc, retry)


def _raise_classified(exc: Exception, retry: int) -> None:
    if namespace_going(exc):
        return  # the namespace and all in it are being deleted: nothing left to reconcile
    classified = to_kopf(exc, retry)
    if classified is None:
        raise exc  # a bug: kopf logs the traceback and retries on its own schedule
    raise classified from exc


@kopf.on.event(GROUP, VERSION, "finetunejobs")
@takes_indexes
async def finetunejob_changed(
    body: kopf.Body,
    memo: kopf.Memo,
    type: str | None,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
    **_: Any,
) -> None:
    deleted = type == "DELETED"
    await finetunejob.hand_off(state_of(memo), body, deleted, owners, children, jobs)


# Every ConfigMap not made by the operator: kopf lists them all already (its label filters
# apply in the operator, not in the watch), so this adds no watch; the index lookup first makes
# the unreferenced ones cost nothing more.
@kopf.on.event("", "v1", "configmaps", labels={"app.kubernetes.io/managed-by": kopf.ABSENT})
@takes_indexes
async def program_source_changed(
    body: kopf.Body,
    memo: kopf.Memo,
    type: str | None,
    program_sources: SourcesIndex,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
    **_: Any,
) -> None:
    await modelservice.program_source_changed(
        state_of(memo), body, type == "DELETED", program_sources, owners, children, jobs
    )


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("", "v1", "services", labels=OURS)
@kopf.on.event("", "v1", "configmaps", labels=OURS)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OURS)
@kopf.on.event("batch", "v1", "jobs", labels=OURS)
@kopf.on.event("keda.sh", "v1alpha1", "scaledobjects", labels=OURS)
@kopf.on.event("inference.networking.k8s.io", "v1", "inferencepools", labels=OURS)
@takes_indexes
async def child_changed(
    body: kopf.Body,
    memo: kopf.Memo,
    type: str | None,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
    **_: Any,
) -> None:
    """A child changed or vanished (drift, a rollout, a finished Job): reconcile its owner."""
    deleted = type == "DELETED"
    await child_events.child_changed(state_of(memo), body, deleted, owners, children, jobs)


@kopf.index(GROUP, VERSION, "finetunejobs", id="jobs")
async def index_jobs(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """FineTuneJobs by namespace, as much as a ModelService's adapters need of them."""
    return job_entry(body)


@kopf.index(GROUP, VERSION, "modelservices", id="program_sources")
async def index_program_sources(body: kopf.Body, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, ConfigMap) → the ModelServices whose programs are compiled into it."""
    return source_entries(body)


@kopf.index(GROUP, VERSION, "modelservices", id="owners")
@kopf.index(GROUP, VERSION, "finetunejobs", id="owners")
async def index_owners(body: kopf.Body, **_: Any) -> dict[OwnerKey, dict[str, Any]]:
    """The custom resources in memory, so a child's event finds its owner without a GET."""
    return owner_entry(body)


@kopf.index("apps", "v1", "deployments", labels=OURS, id="children")
@kopf.index("", "v1", "services", labels=OURS, id="children")
@kopf.index("", "v1", "configmaps", labels=OURS, id="children")
@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=OURS, id="children")
@kopf.index("policy", "v1", "poddisruptionbudgets", labels=OURS, id="children")
@kopf.index("batch", "v1", "jobs", labels=OURS, id="children")
@kopf.index("", "v1", "serviceaccounts", labels=OURS, id="children")
@kopf.index("rbac.authorization.k8s.io", "v1", "roles", labels=OURS, id="children")
@kopf.index("rbac.authorization.k8s.io", "v1", "rolebindings", labels=OURS, id="children")
# Optional: kopf serves these once KEDA's and the Inference Extension's CRDs exist (it
# watches the CRDs), and warns until then.
@kopf.index("keda.sh", "v1alpha1", "scaledobjects", labels=OURS, id="children")
@kopf.index("inference.networking.k8s.io", "v1", "inferencepools", labels=OURS, id="children")
async def index_children(body: kopf.Body, **_: Any) -> dict[OwnerKey, str] | None:
    """Which children exist, by owner: the resync and the optional-child deletes read it."""
    return child_entry(body)
