"""What the gateway serves: the ModelServices it sees and their ready endpoints.

Pure state, fed by `watch.py` with ModelService and EndpointSlice objects as the API server
sends them; routes and the scaler read it. A served model is a ModelService's name, or
`<service>:<adapter>` for one of its declared adapters. Services of the same name in two
namespaces: the first namespace in sorted order serves the name (a warning says so).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("modelkube.gateway")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_IDLE_S = 600


@dataclass(frozen=True)
class ModelServiceView:
    namespace: str
    name: str
    adapters: tuple[str, ...]
    replicas: int
    scales_to_zero: bool  # autoscaling.minReplicas is 0
    idle_s: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def models(self) -> list[str]:
        return [self.name, *(f"{self.name}:{a}" for a in self.adapters)]


@dataclass(frozen=True)
class Target:
    """Where a model name leads: its service, and the adapter ("" for the base model)."""

    service: ModelServiceView
    adapter: str


def service_view(obj: dict[str, Any]) -> ModelServiceView:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    scaling = spec.get("autoscaling") or {}
    return ModelServiceView(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        adapters=tuple(str(a["name"]) for a in spec.get("adapters") or [] if "name" in a),
        replicas=int(spec.get("replicas", 1)),
        scales_to_zero=bool(scaling) and scaling.get("minReplicas", 1) == 0,
        idle_s=int(scaling.get("idleSeconds", DEFAULT_IDLE_S)),
    )


def ready_endpoints(slice_obj: dict[str, Any]) -> tuple[str, ...]:
    """`ip:port` of each ready, not terminating endpoint of an EndpointSlice."""
    ports = slice_obj.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == "http"), None)
    port = port or (ports[0].get("port") if ports else None)
    if port is None:
        return ()
    found: list[str] = []
    for endpoint in slice_obj.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        found.extend(f"{address}:{port}" for address in (endpoint.get("addresses") or [])[:1])
    return tuple(found)


@dataclass
class Catalog:
    services: dict[tuple[str, str], ModelServiceView] = field(default_factory=dict)
    # (namespace, slice name) -> (service name, ready endpoints)
    slices: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- fed by the watch --------------------------------------------------------------
    def put_service(self, obj: dict[str, Any]) -> None:
        view = service_view(obj)
        self.services[view.key] = view
        self._notify()

    def drop_service(self, namespace: str, name: str) -> None:
        self.services.pop((namespace, name), None)
        self._notify()

    def put_slice(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        key = (meta.get("namespace", ""), meta["name"])
        if owner is None:
            self.slices.pop(key, None)
        else:
            self.slices[key] = (owner, ready_endpoints(obj))
        self._notify()

    def drop_slice(self, namespace: str, name: str) -> None:
        self.slices.pop((namespace, name), None)
        self._notify()

    def replace(self, kind: str, objects: list[dict[str, Any]]) -> None:
        """After a (re)list: exactly these objects of `kind`."""
        if kind == "ModelService":
            self.services.clear()
            for obj in objects:
                self.put_service(obj)
        else:
            self.slices.clear()
            for obj in objects:
                self.put_slice(obj)
        self._notify()

    # -- read by routes and the scaler --------------------------------------------------
    def resolve(self, model: str) -> Target | None:
        name, _, adapter = model.partition(":")
        matches = sorted(
            (v for v in self.services.values() if v.name == name), key=lambda v: v.namespace
        )
        if not matches or (adapter and adapter not in matches[0].adapters):
            return None
        if len(matches) > 1:
            log.warning("model %s is served from namespace %s only", name, matches[0].namespace)
        return Target(matches[0], adapter)

    def endpoints(self, service: ModelServiceView) -> list[str]:
        found: set[str] = set()
        for (namespace, _), (owner, ready) in self.slices.items():
            if namespace == service.namespace and owner == service.name:
                found.update(ready)
        return sorted(found)

    def all_endpoints(self) -> set[str]:
        return {e for _, ready in self.slices.values() for e in ready}

    def models(self) -> list[str]:
        names: set[str] = set()
        for view in self.services.values():
            names.update(view.models())
        return sorted(names)

    def next_change(self) -> asyncio.Event:
        """Set at the next change of anything in the catalog (take it before looking)."""
        return self._changed

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()
