"""ModelService: its reconcile as the handlers run it, and the ConfigMaps its programs read."""

from collections.abc import Mapping
from typing import Any

from modelkube_operator.handlers.errors import settle
from modelkube_operator.handlers.indexes import (
    ChildrenIndex,
    JobsIndex,
    OwnersIndex,
    SourcesIndex,
    jobs_in,
    key_of,
)
from modelkube_operator.handlers.posting import reconciled
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.reconcilers.modelservice import ChildEvent, reconcile_modelservice
from modelkube_operator.reconcilers.programs import source_state

KIND = "ModelService"


async def reconcile(
    state: OperatorState,
    body: Mapping[str, Any],
    children: ChildrenIndex,
    jobs: JobsIndex,
    child: ChildEvent | None = None,
) -> None:
    """Reconcile one ModelService (its own event when `child` is None), counted, with its
    condition transitions posted as Events. Raises what the reconcile raised."""
    key = key_of(body)
    # Snapshots: kopf changes its indexes while the reconcile awaits.
    present = list(children.get(key, []))
    run = reconcile_modelservice(state.kube, body, present, jobs_in(jobs, key[1]), child)
    await reconciled(state.kube, KIND, body, run)


async def program_source_changed(
    state: OperatorState,
    configmap: Mapping[str, Any],
    deleted: bool,
    sources: SourcesIndex,
    owners: OwnersIndex,
    children: ChildrenIndex,
    jobs: JobsIndex,
) -> None:
    """A ConfigMap holding a compiled program changed or went away: the ModelServices using
    it reconcile, and their runtimes reload the programs without a restart."""
    meta = configmap["metadata"]
    key = (meta.get("namespace") or "", meta.get("name") or "")
    if key not in sources:
        return
    if deleted:
        state.program_sources.pop(key, None)
    else:
        seen = source_state(configmap)
        if state.program_sources.get(key) == seen:
            return  # a label or annotation edit, or a resync of the watch
        state.program_sources[key] = seen
    for service in sorted(set(sources[key])):
        for owner in list(owners.get((KIND, key[0], service), [])):  # changes as we await
            await settle(state, owner, reconcile(state, owner, children, jobs))
