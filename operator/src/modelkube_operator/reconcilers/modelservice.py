"""ModelService → ConfigMap, Deployment, Service, HPA or KEDA ScaledObject, PDB, ServiceMonitor,
and its status.

One level-based reconcile serves every trigger. A spec change (or resume, or the resync timer)
applies every child. A child's event runs the same reconcile but applies only that child, and
only when someone else changed it or it is gone (its managedFields say so): the operator's own
applies then cause no further applies, and a burst of N new ModelServices costs a few API
calls per child event, not a full re-apply each. The status is written whenever the reconcile
knows the Deployment's state: always for the owner's own events, for a child's only when the
child is the Deployment.
"""

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelkube_operator.api.modelservice import ModelServiceSpec, ModelServiceStatus
from modelkube_operator.builders.adapters import AdapterPlan, plan_adapters
from modelkube_operator.builders.common import Obj, Owner, selector_labels
from modelkube_operator.builders.inference_pool import API_VERSION as POOL_API_VERSION
from modelkube_operator.builders.inference_pool import build_inference_pool
from modelkube_operator.builders.monitoring import build_servicemonitor
from modelkube_operator.builders.networking import (
    build_service,
    service_name_problem,
    service_url,
)
from modelkube_operator.builders.programs import ProgramPlan
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from modelkube_operator.builders.runtime_access import build_runtime_access, runtime_account
from modelkube_operator.builders.scaling import (
    KEDA_API_VERSION,
    build_hpa,
    build_pdb,
    build_scaledobject,
)
from modelkube_operator.k8s.client import Kube
from modelkube_operator.reconcilers.common import (
    apply_child,
    changed_by_others,
    invalid_spec,
    lock_for,
    owner_of,
    spec_error,
    write_status,
)
from modelkube_operator.reconcilers.errors import SpecError
from modelkube_operator.reconcilers.programs import resolve_programs
from modelkube_operator.status.conditions import Cond
from modelkube_operator.status.modelservice import (
    adapters_condition,
    auth_condition,
    deployment_conditions,
    programs_condition,
    served_models,
    summary_fields,
)

SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"
KEDA_CRD = "scaledobjects.keda.sh"
INFERENCEPOOL_CRD = "inferencepools.inference.networking.k8s.io"
_CRD_TTL_S = 60.0
_crd_seen: dict[str, tuple[float, bool]] = {}
_API_VERSIONS = {
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "ScaledObject": KEDA_API_VERSION,
    "InferencePool": POOL_API_VERSION,
    "ServiceAccount": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
}


@dataclass(frozen=True)
class ChildEvent:
    """The event of one child that triggered a reconcile (a watch event's object)."""

    body: Mapping[str, Any]
    deleted: bool

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class OptionalCRDs:
    """Which optional CRDs the API server has: the Prometheus Operator's ServiceMonitor,
    KEDA's ScaledObject, the Inference Extension's InferencePool."""

    servicemonitors: bool = False
    keda: bool = False
    inference_pools: bool = False

    def served(self, kind: str) -> bool:
        """Whether the API server knows the kind."""
        return {
            "ServiceMonitor": self.servicemonitors,
            "ScaledObject": self.keda,
            "InferencePool": self.inference_pools,
        }.get(kind, True)


async def reconcile_modelservice(
    kube: Kube,
    body: Mapping[str, Any],
    present: Collection[str] | None = None,
    jobs: Mapping[str, Mapping[str, Any]] | None = None,
    child: ChildEvent | None = None,
) -> list[Obj]:
    """Bring the children and the status in line with the spec; return condition transitions.

    `present` names the child kinds known to exist (None: unknown), so an optional child that
    is not there costs no DELETE. One created since is removed by its own event. `jobs`: the
    FineTuneJobs in the namespace by name, whose adapters the service may serve. The
    ConfigMaps of compiled programs are read here, one GET each (none without compiledRef).
    `child`: the child event that triggered this reconcile, None for the owner's own.

    Raises SpecError, after saying so in status, when the spec cannot work.
    """
    owner = owner_of(body)
    async with lock_for(owner):
        previous = body.get("status") or {}
        spec, error = _parse(body)
        # Past the schema but unusable: say so in status instead of crash-looping.
        problem = error or service_name_problem(owner.name)
        if spec is None or problem:
            raise await _invalid(kube, owner, previous, problem)
        monitors = await _crd_exists(kube, SERVICEMONITOR_CRD)
        keda = await _crd_exists(kube, KEDA_CRD)
        pools = await _crd_exists(kube, INFERENCEPOOL_CRD)
        plan = plan_adapters(owner.name, spec, jobs or {})
        # Only the ConfigMap's data and the status read the programs: other child events
        # leave their ConfigMaps unread (and the ConfigMap and Deployment unapplied).
        reads_programs = child is None or child.kind in ("ConfigMap", "Deployment")
        programs = (
            await resolve_programs(kube, owner.namespace, spec) if reads_programs else ProgramPlan()
        )
        deployment: Obj | None = dict(child.body) if child and child.kind == "Deployment" else None
        optional = OptionalCRDs(monitors, keda, pools)
        for kind, obj in desired_children(owner, spec, plan, programs, optional).items():
            if obj is not None and _to_apply(obj, child):
                applied = await apply_child(kube, owner, ModelServiceStatus, previous, "Ready", obj)
                deployment = applied if kind == "Deployment" else deployment
            elif obj is None and _to_delete(kind, owner, present, child, optional):
                await kube.delete(_API_VERSIONS[kind], kind, owner.namespace, _name(kind, owner))
        if deployment is None:
            return []  # the status needs the Deployment's state, which this event lacks
        return await _write_status(kube, owner, spec, body, deployment, plan, programs)


def _to_apply(obj: Obj, child: ChildEvent | None) -> bool:
    """Every wanted child on the owner's events; on a child's, that child if it is gone or
    someone else wrote it since our last apply (drift)."""
    if child is None:
        return True
    if (obj["kind"], obj["metadata"]["name"]) != (child.kind, child.name):
        return False
    return child.deleted or changed_by_others(child.body)


def _to_delete(
    kind: str,
    owner: Owner,
    present: Collection[str] | None,
    child: ChildEvent | None,
    optional: OptionalCRDs,
) -> bool:
    """An unwanted child: on the owner's events, each kind that may exist; on a child's, that
    child if it still exists."""
    if child is None:
        return (present is None or kind in present) and optional.served(kind)
    return kind == child.kind and not child.deleted and child.name == _name(kind, owner)


async def _invalid(
    kube: Kube, owner: Owner, previous: Mapping[str, Any], message: str
) -> SpecError:
    return await invalid_spec(kube, owner, ModelServiceStatus, previous, "Ready", message)


def _name(kind: str, owner: Owner) -> str:
    return (
        runtime_account(owner) if kind in ("ServiceAccount", "Role", "RoleBinding") else owner.name
    )


def desired_children(
    owner: Owner,
    spec: ModelServiceSpec,
    plan: AdapterPlan,
    programs: ProgramPlan,
    optional: OptionalCRDs = OptionalCRDs(),
) -> dict[str, Obj | None]:
    """Every child kind, and the object it should be (None: it should not exist)."""
    configmap = build_configmap(owner, spec, plan, programs)
    return {
        # The runtime's identity first: its pods must not start before their account exists.
        **build_runtime_access(owner, spec),
        "ConfigMap": configmap,
        "Deployment": build_deployment(owner, spec, plan, settings_hash(configmap)),
        "Service": build_service(owner),
        "HorizontalPodAutoscaler": build_hpa(owner, spec, optional.keda),
        "ScaledObject": build_scaledobject(owner, spec, optional.keda),
        "PodDisruptionBudget": build_pdb(owner, spec),
        "ServiceMonitor": build_servicemonitor(owner, spec, optional.servicemonitors),
        "InferencePool": build_inference_pool(owner, spec, optional.inference_pools),
    }


async def _write_status(
    kube: Kube,
    owner: Owner,
    spec: ModelServiceSpec,
    body: Mapping[str, Any],
    deployment: Obj,
    plan: AdapterPlan,
    programs: ProgramPlan,
) -> list[Obj]:
    missing = [
        claim
        for claim in plan.claims
        if await kube.get("v1", "PersistentVolumeClaim", owner.namespace, claim) is None
    ]
    conds, fields = desired_status(owner, spec, deployment, plan, programs, missing)
    previous = body.get("status") or {}
    return await write_status(kube, owner, ModelServiceStatus, previous, conds, fields)


def desired_status(
    owner: Owner,
    spec: ModelServiceSpec,
    deployment: Obj,
    plan: AdapterPlan,
    programs: ProgramPlan,
    missing_claims: Collection[str],
) -> tuple[list[Cond], Obj]:
    """The conditions and the fields of the status, from what the reconcile found."""
    ready = [name for name, _ in plan.ready]
    missing = [
        f"claim {claim} does not exist: the runtime's pods cannot start until it does"
        for claim in missing_claims
    ]
    conds = [
        *deployment_conditions(spec, deployment or None),
        auth_condition(spec),
        adapters_condition(ready, [*plan.waiting, *missing]),
        programs_condition([p["name"] for p in programs.programs], programs.problems),
    ]
    status = deployment.get("status", {})
    fields = {
        "replicas": status.get("replicas", 0),
        "readyReplicas": status.get("readyReplicas", 0),
        "selector": ",".join(f"{k}={v}" for k, v in selector_labels(owner).items()),
        "url": service_url(owner),
        "servedModels": served_models(owner.name, ready),
        **summary_fields(spec, deployment or None),
    }
    return conds, fields


async def _crd_exists(kube: Kube, name: str) -> bool:
    """Whether an optional CRD (the Prometheus Operator's, KEDA's) is installed, looked up at
    most once a minute."""
    seen = _crd_seen.get(name)
    if seen is not None and time.monotonic() - seen[0] < _CRD_TTL_S:
        return seen[1]
    crd = await kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", name)
    _crd_seen[name] = (time.monotonic(), crd is not None)
    return crd is not None


def _parse(body: Mapping[str, Any]) -> tuple[ModelServiceSpec | None, str]:
    try:
        return ModelServiceSpec.model_validate(body.get("spec") or {}), ""
    except ValidationError as exc:
        return None, spec_error(exc)
