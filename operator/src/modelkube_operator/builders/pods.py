"""A spec's pod settings as Pod spec fields, for the runtime's and the trainer's pods."""

from collections.abc import Mapping

from modelkube_operator.api.pods import EnvVar, PodSettings, Resources
from modelkube_operator.builders.common import Obj
from modelkube_operator.images import GPU_RESOURCE


def wants_gpu(settings: PodSettings) -> bool:
    r = settings.resources
    return GPU_RESOURCE in r.requests or GPU_RESOURCE in r.limits


def resources(spec: Resources, defaults: Mapping[str, str]) -> Obj:
    """The spec's resources, with a default request for each key it leaves out, so no pod runs
    BestEffort. A key with a limit and no request gets no default: Kubernetes requests the limit
    then, and a default above the limit would make the pod invalid."""
    requests = {
        **{k: v for k, v in defaults.items() if k not in spec.limits},
        **spec.requests,
    }
    out: Obj = {"requests": requests}
    if spec.limits:
        out["limits"] = dict(spec.limits)
    return out


def env_var(var: EnvVar) -> Obj:
    if var.value_from is None:
        return {"name": var.name, "value": var.value or ""}
    source = var.value_from
    if source.secret_key_ref is not None:
        kind, ref = "secretKeyRef", source.secret_key_ref
    elif source.config_map_key_ref is not None:
        kind, ref = "configMapKeyRef", source.config_map_key_ref
    else:  # the CRD requires one of them
        return {"name": var.name, "value": ""}
    selector: Obj = {"name": ref.name, "key": ref.key}
    if ref.optional is not None:
        selector["optional"] = ref.optional
    return {"name": var.name, "valueFrom": {kind: selector}}


def scheduling(settings: PodSettings) -> Obj:
    """imagePullSecrets, nodeSelector, tolerations, affinity and priorityClassName, when set."""
    out: Obj = {}
    if settings.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s.name} for s in settings.image_pull_secrets]
    if settings.node_selector:
        out["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        out["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in settings.tolerations
        ]
    if settings.affinity:
        out["affinity"] = settings.affinity.model_dump(by_alias=True, exclude_none=True)
    if settings.priority_class_name:
        out["priorityClassName"] = settings.priority_class_name
    return out


def cache_volume(settings: PodSettings) -> Obj:
    """The `cache` volume: the spec's claim (one download per model for every pod that mounts
    it), else an emptyDir, bounded when the spec says so."""
    cache = settings.model_cache
    if cache.claim_name is not None:
        return {"name": "cache", "persistentVolumeClaim": {"claimName": cache.claim_name}}
    empty: Obj = {"sizeLimit": cache.size_limit} if cache.size_limit is not None else {}
    return {"name": "cache", "emptyDir": empty}
