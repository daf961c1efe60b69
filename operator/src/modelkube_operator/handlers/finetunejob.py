"""FineTuneJob: its reconcile as the handlers run it, and the hand-off of a finished
fine-tune to the ModelServices that serve its adapter."""

from collections.abc import Mapping
from typing import Any

from modelkube_operator.handlers import modelservice
from modelkube_operator.handlers.errors import settle
from modelkube_operator.handlers.indexes import ChildrenIndex, JobsIndex, OwnersIndex
from modelkube_operator.handlers.posting import reconciled
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.reconcilers.finetunejob import reconcile_finetunejob
from modelkube_operator.reconcilers.handoff import handoff_state, serves_job

KIND = "FineTuneJob"


async def reconcile(state: OperatorState, body: Mapping[str, Any]) -> None:
    """Reconcile one FineTuneJob, counted, with its condition transitions posted as Events.
    Raises what the reconcile raised."""
    await reconciled(state.kube, KIND, body, reconcile_finetunejob(state.kube, body))


async def hand_off(
    state: OperatorState,
    job: Mapping[str, Any],
    deleted: bool,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
) -> None:
    """A FineTuneJob finished, failed or went away: the ModelServices that serve its adapter
    reconcile, so a finished fine-tune is handed to the runtime at once."""
    meta = job["metadata"]
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    key = (namespace, name)
    if deleted:
        state.handoff.pop(key, None)  # forgotten, and its services reconcile without it
    else:
        seen = handoff_state(job)
        if state.handoff.get(key) == seen:
            return
        state.handoff[key] = seen
    labels = dict(meta.get("labels") or {})
    services = [
        owner
        for store in owners.values()
        for owner in store
        if owner["kind"] == modelservice.KIND
        and owner["metadata"]["namespace"] == namespace
        and serves_job(owner, name, labels)
    ]
    for service in services:
        await settle(state, service, modelservice.reconcile(state, service, children, jobs))
