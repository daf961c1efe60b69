"""A small async client for namespaced objects: create, get, list and merge-patch.

The runtime needs only these four calls, so it speaks the REST API directly on httpx
rather than pulling in a Kubernetes client library.
"""

import ssl
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx

from modelkube_serving.cluster.credentials import InCluster

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: `api/v1` or `apis/<group>/<version>`, and its plural."""

    prefix: str
    plural: str

    @property
    def qualified(self) -> str:
        """`configmaps` or `finetunejobs.modelkube.io`, as RBAC and kubectl name it."""
        group = self.prefix.split("/")[1] if self.prefix.startswith("apis/") else ""
        return f"{self.plural}.{group}" if group else self.plural

    def path(self, namespace: str, name: str | None = None) -> str:
        base = f"/{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


CONFIGMAPS = Resource("api/v1", "configmaps")
FINETUNEJOBS = Resource("apis/modelkube.io/v1alpha1", "finetunejobs")


class KubeError(Exception):
    """A failed call: the API server's Status (code, reason, message), or code 0 when the
    server could not be reached. `verb` and `resource` say what was attempted."""

    def __init__(self, code: int, reason: str, message: str, verb: str, resource: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.verb = verb
        self.resource = resource


class _BearerFromFile(httpx.Auth):
    def __init__(self, credentials: InCluster) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # Projected tokens rotate: read the file per request.
        request.headers["Authorization"] = f"Bearer {self.credentials.token()}"
        yield request


class KubeClient:
    def __init__(self, credentials: InCluster, timeout_s: float = 10.0) -> None:
        context = ssl.create_default_context(cafile=str(credentials.ca_file))
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=context,
            auth=_BearerFromFile(credentials),
            timeout=timeout_s,
            headers={"Accept": "application/json"},
        )

    async def create(self, resource: Resource, namespace: str, body: Obj) -> Obj:
        return await self._call("create", resource, "POST", resource.path(namespace), json=body)

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        return await self._call("get", resource, "GET", resource.path(namespace, name))

    async def list(
        self, resource: Resource, namespace: str, label_selector: str | None = None
    ) -> list[Obj]:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self._call("list", resource, "GET", resource.path(namespace), params=params)
        items: list[Obj] = body.get("items") or []
        return items

    async def merge_patch(self, resource: Resource, namespace: str, name: str, patch: Obj) -> Obj:
        return await self._call(
            "patch",
            resource,
            "PATCH",
            resource.path(namespace, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, verb: str, resource: Resource, method: str, url: str, **kw: Any) -> Obj:
        try:
            response = await self._http.request(method, url, **kw)
        except (httpx.TransportError, OSError) as exc:
            message = f"cannot reach the Kubernetes API server: {exc}"
            raise KubeError(0, "Unreachable", message, verb, resource.qualified) from exc
        if response.is_success:
            body: Obj = response.json()
            return body
        raise _status_error(response, verb, resource)


def _status_error(response: httpx.Response, verb: str, resource: Resource) -> KubeError:
    try:
        status = response.json()
    except ValueError:
        status = {}
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = {"message": response.text.strip() or response.reason_phrase}
    return KubeError(
        response.status_code,
        str(status.get("reason") or response.reason_phrase),
        str(status.get("message") or response.reason_phrase),
        verb,
        resource.qualified,
    )
