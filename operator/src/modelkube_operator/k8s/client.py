"""A small async client: server-side apply, get, delete. Objects are plain dicts.

It runs on aiohttp, the HTTP stack kopf itself uses. An earlier httpx client spent a third
of the operator's CPU during a 500-object burst in httpcore's pool bookkeeping, which checks
every pooled TLS connection on every request (measured with py-spy).
"""

import json
import ssl
from typing import Any

import aiohttp

from modelkube_operator.k8s.credentials import Credentials
from modelkube_operator.k8s.resources import collection_path, object_path

FIELD_MANAGER = "modelkube-operator"
MAX_IN_FLIGHT = 32
TIMEOUT_S = 30.0
Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Kube:
    """Create it inside the running event loop (an aiohttp session belongs to one loop)."""

    def __init__(self, creds: Credentials) -> None:
        tls: ssl.SSLContext | bool = (
            False if creds.insecure else ssl.create_default_context(cafile=creds.ca_file)
        )
        if isinstance(tls, ssl.SSLContext) and creds.cert_file and creds.key_file:
            tls.load_cert_chain(creds.cert_file, creds.key_file)
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
        self._server = creds.server.rstrip("/")
        # At most MAX_IN_FLIGHT requests, each on a pooled keep-alive connection.
        self._http = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        )

    async def close(self) -> None:
        await self._http.close()

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if content_type else None
        async with self._http.request(
            method, self._server + path, params=params, data=body, headers=headers
        ) as response:
            return response.status, await response.read()

    async def apply(self, obj: Obj, subresource: str | None = None) -> Obj:
        """Server-side apply with our field manager; `force` takes fields from kubectl edits."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if subresource:
            path = f"{path}/{subresource}"
        status, body = await self._call(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=json.dumps(obj).encode(),
            content_type="application/apply-patch+yaml",
        )
        return _json(status, body)

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: Obj
    ) -> Obj:
        """Set a few fields without taking ownership of the rest (SSA would own them all)."""
        status, body = await self._call(
            "PATCH",
            object_path(api_version, kind, namespace, name),
            params={"fieldManager": FIELD_MANAGER},
            body=json.dumps(patch).encode(),
            content_type="application/merge-patch+json",
        )
        return _json(status, body)

    async def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[Obj]:
        params = {"labelSelector": label_selector} if label_selector else None
        status, body = await self._call(
            "GET", collection_path(api_version, kind, namespace), params=params
        )
        items: list[Obj] = _json(status, body).get("items", [])
        return items

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        status, body = await self._call("GET", object_path(api_version, kind, namespace, name))
        if status == 404:
            return None
        return _json(status, body)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        status, body = await self._call(
            "DELETE",
            object_path(api_version, kind, namespace, name),
            params={"propagationPolicy": "Background"},
        )
        if status != 404:
            _json(status, body)


def _json(status: int, body: bytes) -> Obj:
    if 200 <= status < 300:
        parsed: Obj = json.loads(body)
        return parsed
    text = body.decode(errors="replace")
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    raise ApiError(status, str(message))
