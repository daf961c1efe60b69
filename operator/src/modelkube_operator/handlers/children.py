"""A child's event (drift, a rollout, a finished Job, a deletion) reconciles its owner."""

import kopf

from modelkube_operator.handlers import finetunejob, modelservice
from modelkube_operator.handlers.errors import settle
from modelkube_operator.handlers.indexes import ChildrenIndex, JobsIndex, OwnersIndex, owners_of
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.reconcilers.modelservice import ChildEvent


async def child_changed(
    state: OperatorState,
    child: kopf.Body,
    deleted: bool,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
) -> None:
    for owner in owners_of(child, owners):
        if owner["kind"] == modelservice.KIND:
            event = ChildEvent(child, deleted)
            run = modelservice.reconcile(state, owner, children, jobs, event)
        else:
            run = finetunejob.reconcile(state, owner)
        await settle(state, owner, run)
