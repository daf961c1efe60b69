"""The one Kubernetes client: the operator's, the runtime's fine-tuning API's and the trainer's.

Server-side apply, create, get, list, merge patch and delete; objects are plain dicts. It
runs on aiohttp, the HTTP stack kopf itself uses. An earlier httpx client spent a third of
the operator's CPU during a 500-object burst in httpcore's pool bookkeeping, which checks
every pooled TLS connection on every request (measured with py-spy).
"""

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from modelkube_operator.k8s.credentials import Credentials
from modelkube_operator.k8s.resources import Resource, resource

FIELD_MANAGER = "modelkube-operator"
MAX_IN_FLIGHT = 32
TIMEOUT_S = 30.0
Obj = dict[str, Any]


class ApiError(Exception):
    """A failed call. `status` is the HTTP status, or 0 when the API server could not be
    reached; `message` is the API server's own (its Status object's). `reason` is the Status
    reason, and `verb` and `resource` say what was attempted, as RBAC names them
    (`create`, `finetunejobs.modelkube.io`)."""

    def __init__(
        self, status: int, message: str, reason: str = "", verb: str = "", resource: str = ""
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason
        self.verb = verb
        self.resource = resource

    @property
    def transient(self) -> bool:
        """Worth retrying as is: unreachable, throttled, or the server's own failure."""
        return self.status in (0, 429) or self.status >= 500


class Kube:
    """One HTTP session per event loop: it is made on the first call, inside the loop that
    makes it (an aiohttp session belongs to one loop), and `close` ends it."""

    def __init__(
        self, creds: Credentials, field_manager: str = FIELD_MANAGER, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._creds = creds
        self._server = creds.server.rstrip("/")
        self._field_manager = field_manager
        self._timeout_s = timeout_s
        self._tls = _tls(creds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def apply(self, obj: Obj, subresource: str | None = None) -> Obj:
        """Server-side apply with our field manager; `force` takes fields from kubectl edits."""
        meta = obj["metadata"]
        kind = resource(obj["apiVersion"], obj["kind"])
        return await self._json(
            "patch",
            kind,
            "PATCH",
            _with(kind.path(meta.get("namespace"), meta["name"]), subresource),
            params={"fieldManager": self._field_manager, "force": "true"},
            body=json.dumps(obj).encode(),
            content_type="application/apply-patch+yaml",
        )

    async def create(self, obj: Obj) -> Obj:
        """Create `obj` in its `metadata.namespace`; an existing name is a 409 ApiError."""
        kind = resource(obj["apiVersion"], obj["kind"])
        return await self._json(
            "create",
            kind,
            "POST",
            kind.path(obj["metadata"].get("namespace")),
            params={"fieldManager": self._field_manager},
            body=json.dumps(obj).encode(),
            content_type="application/json",
        )

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        patch: Obj,
        subresource: str | None = None,
    ) -> Obj:
        """Set a few fields without taking ownership of the rest (SSA would own them all)."""
        res = resource(api_version, kind)
        return await self._json(
            "patch",
            res,
            "PATCH",
            _with(res.path(namespace, name), subresource),
            params={"fieldManager": self._field_manager},
            body=json.dumps(patch).encode(),
            content_type="application/merge-patch+json",
        )

    async def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[Obj]:
        res = resource(api_version, kind)
        params = {"labelSelector": label_selector} if label_selector else None
        items: list[Obj] = (
            await self._json("list", res, "GET", res.path(namespace), params=params)
        ).get("items") or []
        return items

    async def list_object(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str = ""
    ) -> Obj:
        """The whole list (every namespace's when `namespace` is None): its items and its
        `metadata.resourceVersion`, where a watch starts."""
        res = resource(api_version, kind)
        params = {"labelSelector": label_selector} if label_selector else None
        return await self._json("list", res, "GET", res.path(namespace), params=params)

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        timeout_s: int = 240,
    ) -> AsyncIterator[Obj]:
        """The watch events (`{"type", "object"}`) after `resource_version`, until the API
        server ends the watch (about `timeout_s`); an expired version comes as an ERROR
        event with a 410 Status, after which the caller lists again."""
        res = resource(api_version, kind)
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        url = self._server + res.path(namespace)
        try:
            async with self._http().get(
                url,
                params=params,
                headers=self._headers(None),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30),
            ) as response:
                if response.status != 200:
                    _parsed(response.status, await response.read(), "watch", res)
                async for line in response.content:
                    if line.strip():
                        event: Obj = json.loads(line)
                        yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            message = f"cannot reach the Kubernetes API server: {str(exc) or type(exc).__name__}"
            raise ApiError(0, message, "Unreachable", "watch", res.qualified) from exc

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when there is none."""
        res = resource(api_version, kind)
        status, body = await self._call("get", res, "GET", res.path(namespace, name))
        if status == 404:
            return None
        return _parsed(status, body, "get", res)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete in the background (dependents are collected later); absent is fine."""
        res = resource(api_version, kind)
        status, body = await self._call(
            "delete",
            res,
            "DELETE",
            res.path(namespace, name),
            params={"propagationPolicy": "Background"},
        )
        if status != 404:
            _parsed(status, body, "delete", res)

    async def _json(self, verb: str, res: Resource, method: str, path: str, **kw: Any) -> Obj:
        status, body = await self._call(verb, res, method, path, **kw)
        return _parsed(status, body, verb, res)

    async def _call(
        self,
        verb: str,
        res: Resource,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        try:
            async with self._http().request(
                method,
                self._server + path,
                params=params,
                data=body,
                headers=self._headers(content_type),
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            message = f"cannot reach the Kubernetes API server: {str(exc) or type(exc).__name__}"
            raise ApiError(0, message, "Unreachable", verb, res.qualified) from exc

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._creds.token  # per request: a rotated token is picked up at once
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # At most MAX_IN_FLIGHT requests, each on a pooled keep-alive connection.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, ssl=self._tls),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            )
        return self._session


def _tls(creds: Credentials) -> ssl.SSLContext | bool:
    if creds.insecure:
        return False
    context = ssl.create_default_context(cafile=creds.ca_file)
    if creds.cert_file and creds.key_file:
        context.load_cert_chain(creds.cert_file, creds.key_file)
    return context


def _with(path: str, subresource: str | None) -> str:
    return f"{path}/{subresource}" if subresource else path


def _parsed(status: int, body: bytes, verb: str, res: Resource) -> Obj:
    if 200 <= status < 300:
        parsed: Obj = json.loads(body)
        return parsed
    text = body.decode(errors="replace").strip()
    try:
        problem = json.loads(text)
    except ValueError:
        problem = None
    if not isinstance(problem, dict) or problem.get("kind") != "Status":
        problem = {}
    message = str(problem.get("message") or text or f"HTTP {status}")
    raise ApiError(status, message, str(problem.get("reason") or ""), verb, res.qualified)
