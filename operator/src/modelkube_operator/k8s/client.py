"""A small async client: server-side apply, get, delete. Objects are plain dicts."""

import asyncio
import json
import ssl
from typing import Any

import httpx

from modelkube_operator.k8s.credentials import Credentials
from modelkube_operator.k8s.resources import object_path

FIELD_MANAGER = "modelkube-operator"
MAX_IN_FLIGHT = 32
Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Kube:
    def __init__(self, creds: Credentials) -> None:
        verify: ssl.SSLContext | bool = (
            False if creds.insecure else ssl.create_default_context(cafile=creds.ca_file)
        )
        if isinstance(verify, ssl.SSLContext) and creds.cert_file and creds.key_file:
            verify.load_cert_chain(creds.cert_file, creds.key_file)
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
        # Every pooled connection stays alive (httpx keeps 20 by default: under a burst the rest
        # churn through a TLS handshake each), and at most that many requests are in flight, so
        # httpcore's queue, which it scans per request, stays short. Both measured with py-spy.
        limits = httpx.Limits(
            max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
        )
        self._http = httpx.AsyncClient(
            base_url=creds.server, headers=headers, verify=verify, timeout=30.0, limits=limits
        )
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def close(self) -> None:
        await self._http.aclose()

    async def apply(self, obj: Obj, subresource: str | None = None) -> Obj:
        """Server-side apply with our field manager; `force` takes fields from kubectl edits."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if subresource:
            path = f"{path}/{subresource}"
        async with self._slots:
            response = await self._http.patch(
                path,
                content=json.dumps(obj),
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
        return _json(response)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        async with self._slots:
            response = await self._http.get(object_path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        return _json(response)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        async with self._slots:
            response = await self._http.delete(
                object_path(api_version, kind, namespace, name),
                params={"propagationPolicy": "Background"},
            )
        if response.status_code != 404:
            _json(response)


def _json(response: httpx.Response) -> Obj:
    if response.is_success:
        body: Obj = response.json()
        return body
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    raise ApiError(response.status_code, message)
