"""The periodic resync: a safety net under the event-driven reconciles."""

import asyncio
from collections.abc import Mapping
from typing import Any

from modelkube_operator import metrics
from modelkube_operator.handlers import finetunejob, modelservice
from modelkube_operator.handlers.errors import settle
from modelkube_operator.handlers.indexes import ChildrenIndex, JobsIndex, OwnersIndex, key_of
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.reconcilers.resync import OwnerKey, not_ready, out_of_sync

RESYNC_S = 60.0


async def resync_forever(
    state: OperatorState, owners: OwnersIndex, children: ChildrenIndex, jobs: JobsIndex
) -> None:
    """Child events already correct drift within seconds. A pass reads only the indexes, so
    it costs nothing while everything is in sync."""
    seen_before: set[OwnerKey] = set()
    while True:
        await asyncio.sleep(RESYNC_S)
        seen_before = await resync_once(state, owners, children, jobs, seen_before)


async def resync_once(
    state: OperatorState,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
    seen_before: set[OwnerKey],
) -> set[OwnerKey]:
    """One pass; returns the owners it found out of sync, for the next pass.

    An owner is reconciled only when two passes in a row find it out of sync: one that kopf
    is still working through (a burst) is left to kopf, not reconciled twice. A ModelService
    not Ready is reconciled every pass, which refreshes its status from the Deployment, and
    so is an owner whose last event-driven reconcile failed in a way that may pass.
    """
    snapshot = [owner for store in owners.values() for owner in store]
    present = {key: list(kinds) for key, kinds in children.items()}
    stale = {key_of(owner): owner for owner in out_of_sync(snapshot, present)}
    metrics.count_out_of_sync(stale.values())
    due = {key: owner for key, owner in stale.items() if key in seen_before}
    due |= {key: owner for owner in not_ready(snapshot) if (key := key_of(owner)) not in stale}
    retry, state.retry = state.retry, set()
    due |= {key_of(owner): owner for owner in snapshot if key_of(owner) in retry}
    for owner in due.values():
        await settle(state, owner, _reconcile(state, owner, children, jobs))
    return set(stale)


async def _reconcile(
    state: OperatorState, owner: Mapping[str, Any], children: ChildrenIndex, jobs: JobsIndex
) -> None:
    if owner["kind"] == modelservice.KIND:
        await modelservice.reconcile(state, owner, children, jobs)
    else:
        await finetunejob.reconcile(state, owner)
