"""The failures a reconcile tells apart, in its own terms: the handlers map them to kopf's
retry policy (this layer does not import kopf)."""

from collections.abc import Mapping
from typing import Any

from modelkube_operator.k8s.client import ApiError

INVALID_SPEC = "InvalidSpec"
# Statuses a later try may not get: a conflict, a rate limit, the server or its etcd busy, an
# object or namespace not there yet or going away, a token or role an admin is fixing.
_PASSING = frozenset({401, 403, 404, 408, 409, 425, 429})


class SpecError(Exception):
    """The spec cannot work as written: trying again will not help until it changes.

    The reconcile has already said so in a status condition (reason InvalidSpec). `fresh`:
    that condition is new or says something new, so it deserves an Event.
    """

    def __init__(self, message: str, fresh: bool) -> None:
        super().__init__(message)
        self.reason = INVALID_SPEC
        self.message = message
        self.fresh = fresh


def passing(error: ApiError) -> bool:
    """Whether the API server's refusal may pass by itself (retry with backoff); any other
    4xx refuses the request as built, and sending it again gets the same answer."""
    # status 0: the server could not be reached at all (the client's transport failures).
    return error.transient or error.status in _PASSING


def rejected(error: ApiError) -> bool:
    """The API server refused an object the spec implies as invalid: the spec cannot work."""
    return not passing(error)


def says_new(previous: Mapping[str, Any], type_: str, message: str) -> bool:
    """Whether writing InvalidSpec(`message`) into condition `type_` changes what it says."""
    conditions = previous.get("conditions") or []
    old = next((c for c in conditions if c.get("type") == type_), None)
    return old is None or (old.get("reason"), old.get("message")) != (INVALID_SPEC, message)
