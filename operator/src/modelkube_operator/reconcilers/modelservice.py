"""ModelService → ConfigMap, Deployment, Service, HPA, PDB, ServiceMonitor, and its status."""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelkube_operator.api.modelservice import ModelServiceSpec, ModelServiceStatus
from modelkube_operator.builders.common import Obj, Owner
from modelkube_operator.builders.monitoring import build_servicemonitor
from modelkube_operator.builders.networking import build_service, service_url
from modelkube_operator.builders.runtime import build_configmap, build_deployment, settings_hash
from modelkube_operator.builders.scaling import build_hpa, build_pdb
from modelkube_operator.k8s.client import Kube
from modelkube_operator.reconcilers.common import lock_for, owner_of, write_status
from modelkube_operator.status.conditions import Cond
from modelkube_operator.status.modelservice import (
    auth_condition,
    deployment_conditions,
    served_models,
)

SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"
_OPTIONAL = (
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
)


async def reconcile_modelservice(kube: Kube, body: Mapping[str, Any]) -> list[Obj]:
    """Bring the children and status in line with the spec; return condition transitions."""
    owner = owner_of(body)
    async with lock_for(owner):
        previous = body.get("status") or {}
        try:
            spec = ModelServiceSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            # Past the schema but unusable: say so in status instead of crash-looping.
            reason = Cond("Ready", False, "InvalidSpec", _first_error(exc))
            return await write_status(kube, owner, ModelServiceStatus, previous, [reason], {})
        deployment = await _apply_children(kube, owner, spec)
        conds = [*deployment_conditions(spec, deployment), auth_condition(spec)]
        status = deployment.get("status", {})
        fields = {
            "replicas": status.get("replicas", 0),
            "readyReplicas": status.get("readyReplicas", 0),
            "selector": ",".join(
                f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
            ),
            "url": service_url(owner),
            "servedModels": served_models(owner.name, spec),
        }
        return await write_status(kube, owner, ModelServiceStatus, previous, conds, fields)


async def _apply_children(kube: Kube, owner: Owner, spec: ModelServiceSpec) -> Obj:
    configmap = build_configmap(owner, spec)
    await kube.apply(configmap)
    deployment = await kube.apply(build_deployment(owner, spec, settings_hash(configmap)))
    await kube.apply(build_service(owner))
    crd_present = (
        await kube.get(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", SERVICEMONITOR_CRD
        )
        is not None
    )
    wanted = {
        "HorizontalPodAutoscaler": build_hpa(owner, spec),
        "PodDisruptionBudget": build_pdb(owner, spec),
        "ServiceMonitor": build_servicemonitor(owner, spec, crd_present),
    }
    for api_version, kind in _OPTIONAL:
        obj = wanted[kind]
        if obj is not None:
            await kube.apply(obj)
        elif kind != "ServiceMonitor" or crd_present:
            await kube.delete(api_version, kind, owner.namespace, owner.name)
    return deployment


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
