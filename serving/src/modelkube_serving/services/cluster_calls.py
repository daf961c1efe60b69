"""Calls to the Kubernetes API, with their failures turned into OpenAI errors.

A refusal by RBAC names the permission the runtime's service account lacks, so whoever
deploys it knows which Role rule to add, instead of reading a 500.
"""

from collections.abc import Awaitable
from typing import TypeVar

from modelkube_serving.cluster.client import KubeError
from modelkube_serving.errors import (
    APIError,
    ClusterError,
    Conflict,
    InvalidRequest,
    PermissionDenied,
)

T = TypeVar("T")


async def checked(
    work: Awaitable[T],
    namespace: str,
    not_found: APIError | None = None,
    conflict: APIError | None = None,
) -> T:
    """Await `work`; a KubeError becomes the APIError that says what went wrong."""
    try:
        return await work
    except KubeError as exc:
        raise as_api_error(exc, namespace, not_found, conflict) from exc


def as_api_error(
    exc: KubeError,
    namespace: str,
    not_found: APIError | None = None,
    conflict: APIError | None = None,
) -> APIError:
    if exc.code == 403:
        return PermissionDenied(
            f"The runtime's service account may not {exc.verb} {exc.resource} in namespace "
            f"{namespace}: grant it a Role allowing '{exc.verb}' on '{exc.resource}' "
            f"(Kubernetes said: {exc.message})"
        )
    if exc.code == 404 and not_found is not None:
        return not_found
    if exc.code == 409:
        return conflict or Conflict(exc.message)
    if exc.code in (400, 422):
        return InvalidRequest(f"Kubernetes refused the {exc.resource}: {exc.message}")
    if exc.code == 401:
        return ClusterError(
            f"The Kubernetes API server rejected the runtime's service-account token: {exc.message}"
        )
    return ClusterError(f"Cannot {exc.verb} {exc.resource}: {exc.message}")
