"""Which custom resources need a reconcile: a spec the status has not caught up with, or a
child missing or unwanted.

Events drive reconciles; the periodic resync uses the same test to catch what events cannot
(an event lost across a watch reconnect, a reconcile that failed). It compares the operator's
in-memory view of owners and children, so an idle operator makes no API calls at all.
"""

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from modelkube_operator.api.finetunejob import FineTuneJobSpec
from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.adapters import AdapterPlan
from modelkube_operator.builders.networking import service_name_problem
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.reconcilers.common import owner_of
from modelkube_operator.reconcilers.errors import INVALID_SPEC
from modelkube_operator.reconcilers.modelservice import desired_children
from modelkube_operator.status.finetunejob import finished

OwnerKey = tuple[str, str, str]
# Children the operator watches; a ServiceMonitor's CRD may be absent, so it is not among them.
WATCHED_CHILDREN = frozenset(
    {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"}
)


def owner_key(kind: str, namespace: str, name: str) -> OwnerKey:
    return (kind, namespace, name)


def expected_children(body: Mapping[str, Any]) -> frozenset[str] | None:
    """The watched child kinds that should exist for this resource (none if its spec cannot work).

    None when it does not matter: a finished FineTuneJob may lose its Job and stays finished.
    """
    try:
        if body["kind"] == "FineTuneJob":
            FineTuneJobSpec.model_validate(body.get("spec") or {})
            return None if finished(body.get("status") or {}) else frozenset({"Job"})
        spec = ModelServiceSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return frozenset()
    if service_name_problem(body["metadata"]["name"]):
        return frozenset()
    wanted = desired_children(owner_of(body), spec, AdapterPlan(), ProgramPlan())
    return frozenset(kind for kind, obj in wanted.items() if obj is not None) & _judged(body)


def _judged(body: Mapping[str, Any]) -> frozenset[str]:
    """The watched kinds the index can judge: whether a ModelService that asks for KEDA has
    an HPA depends on whether KEDA is installed, which the index does not know."""
    scaling = (body.get("spec") or {}).get("autoscaling") or {}
    return (
        WATCHED_CHILDREN - {"HorizontalPodAutoscaler"} if scaling.get("keda") else WATCHED_CHILDREN
    )


def spec_pending(body: Mapping[str, Any]) -> bool:
    """Whether the spec changed since the status was last written for it (or never was).

    The status is written last, after every child, so a status that observed this
    generation means the children were applied for it too. Status writes (ours) do not bump
    the generation, so they never trigger another reconcile.
    """
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return False
    status = body.get("status") or {}
    return bool(status.get("observedGeneration") != meta.get("generation"))


def out_of_sync(
    owners: Iterable[Mapping[str, Any]], children: Mapping[OwnerKey, Collection[str]]
) -> list[Mapping[str, Any]]:
    """The owners with a pending spec, or whose watched children differ from what their spec
    wants."""
    stale = []
    for body in owners:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        expected = expected_children(body)
        present = children.get(owner_key(body["kind"], meta["namespace"], meta["name"]), ())
        watched = frozenset(present) & _judged(body)  # accounts and roles are not watched
        if spec_pending(body) or (expected is not None and watched != expected):
            stale.append(body)
    return stale


def not_ready(owners: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ModelServices whose status says not Ready (an invalid spec aside). Their status is
    refreshed every pass: it follows the Deployment's events, and one event applied out of order
    after a restart would otherwise leave it stale until the next one, which may never come."""
    stuck = []
    for body in owners:
        if body.get("kind") != "ModelService" or body["metadata"].get("deletionTimestamp"):
            continue
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if (
            ready is not None
            and ready.get("status") != "True"
            and ready.get("reason") != INVALID_SPEC
        ):
            stuck.append(body)
    return stuck
