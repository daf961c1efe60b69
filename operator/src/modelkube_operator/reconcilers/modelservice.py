"""ModelService → ConfigMap, Deployment, Service, HPA or KEDA ScaledObject, PDB, ServiceMonitor,
and its status.

A spec change (or resume, or the resync timer) reconciles everything. A child's event only
re-applies that child, which corrects drift, and refreshes status when the child is the
Deployment: a burst of N new ModelServices then costs a few API calls per child event, not a
full reconcile each.
"""

import time
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from modelkube_operator.api.modelservice import ModelServiceSpec, ModelServiceStatus
from modelkube_operator.builders.adapters import AdapterPlan, plan_adapters
from modelkube_operator.builders.common import Obj, Owner, selector_labels
from modelkube_operator.builders.monitoring import build_servicemonitor
from modelkube_operator.builders.networking import build_service, service_url
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
    changed_by_others,
    lock_for,
    owner_of,
    spec_error,
    write_status,
)
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
    "ServiceAccount": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
}


async def reconcile_modelservice(
    kube: Kube,
    body: Mapping[str, Any],
    present: Collection[str] | None = None,
    jobs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Obj]:
    """Bring every child and the status in line with the spec; return condition transitions.

    `present` names the child kinds known to exist (None: unknown), so an optional child that
    is not there costs no DELETE. One created since is removed by its own event. `jobs`: the
    FineTuneJobs in the namespace by name, whose adapters the service may serve. The
    ConfigMaps of compiled programs are read here, one GET each (none without compiledRef).
    """
    owner = owner_of(body)
    async with lock_for(owner):
        spec, error = _parse(body)
        if spec is None:
            # Past the schema but unusable: say so in status instead of crash-looping.
            invalid = [Cond("Ready", False, "InvalidSpec", error)]
            return await write_status(
                kube, owner, ModelServiceStatus, body.get("status") or {}, invalid, {}
            )
        crd_present = await _crd_exists(kube, SERVICEMONITOR_CRD)
        keda = await _crd_exists(kube, KEDA_CRD)
        plan = plan_adapters(owner.name, spec, jobs or {})
        programs = await resolve_programs(kube, owner.namespace, spec)
        deployment: Obj = {}
        wanted = desired_children(owner, spec, crd_present, plan, programs, keda)
        for kind, obj in wanted.items():
            if obj is not None:
                applied = await kube.apply(obj)
                deployment = applied if kind == "Deployment" else deployment
            elif (present is None or kind in present) and _served(kind, crd_present, keda):
                await kube.delete(_API_VERSIONS[kind], kind, owner.namespace, _name(kind, owner))
        return await _write_status(kube, owner, spec, body, deployment, plan, programs)


def _served(kind: str, servicemonitors: bool, keda: bool) -> bool:
    """Whether the API server knows the kind (the optional CRDs may be missing)."""
    return {"ServiceMonitor": servicemonitors, "ScaledObject": keda}.get(kind, True)


def _name(kind: str, owner: Owner) -> str:
    return (
        runtime_account(owner) if kind in ("ServiceAccount", "Role", "RoleBinding") else owner.name
    )


async def reconcile_child(
    kube: Kube,
    body: Mapping[str, Any],
    child: Mapping[str, Any],
    deleted: bool,
    jobs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Obj]:
    """One child changed or vanished: re-apply it if someone else changed it or it is gone,
    remove it if unwanted; a Deployment refreshes status."""
    owner = owner_of(body)
    async with lock_for(owner):
        spec, _ = _parse(body)
        if spec is None:
            return []
        kind, name = child["kind"], child["metadata"]["name"]
        plan = plan_adapters(owner.name, spec, jobs or {})
        # Only the ConfigMap's data and the status read the programs.
        needs_programs = kind in ("ConfigMap", "Deployment")
        programs = (
            await resolve_programs(kube, owner.namespace, spec) if needs_programs else ProgramPlan()
        )
        # Whether an HPA is wanted depends on whether KEDA is there to replace it.
        keda = kind == "ScaledObject" or await _crd_exists(kube, KEDA_CRD)
        desired = desired_children(owner, spec, True, plan, programs, keda).get(kind)
        if desired is None and not deleted and name == owner.name:
            await kube.delete(_API_VERSIONS[kind], kind, owner.namespace, name)
        if desired is None or desired["metadata"]["name"] != name:
            return []
        drifted = deleted or changed_by_others(child)
        applied = await kube.apply(desired) if drifted else dict(child)
        if child["kind"] != "Deployment":
            return []
        return await _write_status(kube, owner, spec, body, applied, plan, programs)


def desired_children(
    owner: Owner,
    spec: ModelServiceSpec,
    crd_present: bool,
    plan: AdapterPlan,
    programs: ProgramPlan,
    keda_present: bool = False,
) -> dict[str, Obj | None]:
    """Every child kind, and the object it should be (None: it should not exist)."""
    configmap = build_configmap(owner, spec, plan, programs)
    return {
        # The runtime's identity first: its pods must not start before their account exists.
        **build_runtime_access(owner, spec),
        "ConfigMap": configmap,
        "Deployment": build_deployment(owner, spec, plan, settings_hash(configmap)),
        "Service": build_service(owner),
        "HorizontalPodAutoscaler": build_hpa(owner, spec, keda_present),
        "ScaledObject": build_scaledobject(owner, spec, keda_present),
        "PodDisruptionBudget": build_pdb(owner, spec),
        "ServiceMonitor": build_servicemonitor(owner, spec, crd_present),
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
    ready = [name for name, _ in plan.ready]
    conds = [
        *deployment_conditions(spec, deployment or None),
        auth_condition(spec),
        adapters_condition(ready, plan.waiting),
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
    previous = body.get("status") or {}
    return await write_status(kube, owner, ModelServiceStatus, previous, conds, fields)


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
