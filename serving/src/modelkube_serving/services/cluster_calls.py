"""Calls to the Kubernetes API, with their failures turned into OpenAI errors.

A refusal by RBAC names the permission the runtime's service account lacks, so whoever
deploys it knows which Role rule to add, instead of reading a 500.
"""

from collections.abc import Awaitable
from typing import Any, TypeVar

from modelkube_operator.k8s.client import ApiError

from modelkube_serving.errors import (
    APIError,
    ClusterError,
    Conflict,
    InvalidRequest,
    PermissionDenied,
)

T = TypeVar("T")
Obj = dict[str, Any]


async def checked(
    work: Awaitable[T],
    namespace: str,
    not_found: APIError | None = None,
    conflict: APIError | None = None,
) -> T:
    """Await `work`; an ApiError becomes the APIError that says what went wrong."""
    try:
        return await work
    except ApiError as exc:
        raise as_api_error(exc, namespace, not_found, conflict) from exc


async def found(work: Awaitable[Obj | None], namespace: str, missing: APIError) -> Obj:
    """Await a get; no such object becomes `missing`."""
    obj = await checked(work, namespace)
    if obj is None:
        raise missing
    return obj


def as_api_error(
    exc: ApiError,
    namespace: str,
    not_found: APIError | None = None,
    conflict: APIError | None = None,
) -> APIError:
    if exc.status == 403:
        return PermissionDenied(
            f"The runtime's service account may not {exc.verb} {exc.resource} in namespace "
            f"{namespace}: grant it a Role allowing '{exc.verb}' on '{exc.resource}' "
            f"(Kubernetes said: {exc.message})"
        )
    if exc.status == 404 and not_found is not None:
        return not_found
    if exc.status == 409:
        return conflict or Conflict(exc.message)
    if exc.status in (400, 422):
        return InvalidRequest(f"Kubernetes refused the {exc.resource}: {exc.message}")
    if exc.status == 401:
        return ClusterError(
            f"The Kubernetes API server rejected the runtime's service-account token: {exc.message}"
        )
    return ClusterError(f"Cannot {exc.verb} {exc.resource}: {exc.message}")
