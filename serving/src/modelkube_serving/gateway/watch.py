"""Keeps the catalog in step with the API server: list, then watch, for ModelServices and
EndpointSlices; after a watch ends or its version expires, list again."""

import asyncio
import logging

from modelkube_operator.api import API_VERSION
from modelkube_operator.k8s.client import ApiError, Kube

from modelkube_serving.gateway.catalog import Catalog

log = logging.getLogger("modelkube.gateway")
KINDS = (("ModelService", API_VERSION), ("EndpointSlice", "discovery.k8s.io/v1"))
_RETRY_S = 2.0


async def watch_all(kube: Kube, catalog: Catalog, namespace: str | None) -> None:
    """Runs until cancelled."""
    await asyncio.gather(*(_follow(kube, catalog, namespace, k, v) for k, v in KINDS))


async def synced(kube: Kube, catalog: Catalog, namespace: str | None) -> None:
    """One list of each kind, so the gateway starts with what exists."""
    for kind, api_version in KINDS:
        listed = await kube.list_object(api_version, kind, namespace)
        catalog.replace(kind, listed.get("items") or [])


async def _follow(
    kube: Kube, catalog: Catalog, namespace: str | None, kind: str, api_version: str
) -> None:
    while True:
        try:
            listed = await kube.list_object(api_version, kind, namespace)
            catalog.replace(kind, listed.get("items") or [])
            version = listed["metadata"]["resourceVersion"]
            while version:
                version = await _events(kube, catalog, namespace, kind, api_version, version)
        except ApiError as exc:
            log.warning("watching %s: %s; listing again in %gs", kind, exc, _RETRY_S)
            await asyncio.sleep(_RETRY_S)


async def _events(
    kube: Kube, catalog: Catalog, namespace: str | None, kind: str, api_version: str, since: str
) -> str:
    """Applies one watch's events; the version to go on from, or "" to list again."""
    async for event in kube.watch(api_version, kind, namespace, since):
        kind_of, obj = event.get("type"), event.get("object") or {}
        if kind_of == "ERROR":
            return ""  # 410 Gone, most likely: list again
        meta = obj.get("metadata") or {}
        since = meta.get("resourceVersion", since)
        if kind_of == "BOOKMARK":
            continue
        if kind_of == "DELETED":
            drop = catalog.drop_service if kind == "ModelService" else catalog.drop_slice
            drop(meta.get("namespace", ""), meta.get("name", ""))
        elif kind == "ModelService":
            catalog.put_service(obj)
        else:
            catalog.put_slice(obj)
    return since
