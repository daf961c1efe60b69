"""The ConfigMaps a ModelService's compiled programs come from, and when their change matters."""

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelkube_operator.api.modelservice import ModelServiceSpec
from modelkube_operator.builders.common import Obj
from modelkube_operator.builders.programs import ProgramPlan, compiled_sources, plan_programs
from modelkube_operator.k8s.client import Kube


async def resolve_programs(kube: Kube, namespace: str, spec: ModelServiceSpec) -> ProgramPlan:
    """The programs as the runtime gets them; a GET per referenced ConfigMap, none without."""
    found: dict[str, Obj] = {}
    for name in compiled_sources(spec):
        configmap = await kube.get("v1", "ConfigMap", namespace, name)
        if configmap is not None:
            found[name] = configmap
    return plan_programs(spec, found)


def referenced_configmaps(service: Mapping[str, Any]) -> set[str]:
    """The ConfigMaps a ModelService body's programs name in compiledRef (a raw body, so a
    spec the operator cannot parse costs nothing)."""
    programs = (service.get("spec") or {}).get("programs") or []
    return {p["compiledRef"]["name"] for p in programs if (p.get("compiledRef") or {}).get("name")}


def source_state(configmap: Mapping[str, Any]) -> str:
    """What a program reads of a ConfigMap: its data. A label or annotation edit changes nothing."""
    data = json.dumps(configmap.get("data") or {}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()
