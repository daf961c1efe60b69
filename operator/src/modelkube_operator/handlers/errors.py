"""A reconcile's failure, classified into kopf's terms.

May pass (a conflict, a rate limit, the API server down or slow, the connection lost): a
TemporaryError with a growing delay. Cannot work until the spec changes: a PermanentError,
after the reconcile has written a condition and an Event has been posted. Anything else is a
bug: kopf logs its traceback and retries on its own schedule.
"""

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp
import kopf

from modelkube_operator.handlers.indexes import key_of
from modelkube_operator.handlers.posting import describe
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.k8s.client import ApiError
from modelkube_operator.reconcilers.errors import SpecError, passing

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
logger = logging.getLogger(__name__)


def backoff(retry: int) -> float:
    """Seconds before try `retry + 1` (kopf's `retry` counts the tries before this one):
    1, 2, 4, ... up to five minutes, so a brief conflict costs a second and an API server
    down for long costs a request every five minutes per object."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (1 << min(max(retry, 0), 16)))


def may_pass(exc: BaseException) -> bool:
    """Whether trying the same reconcile again later may succeed without anyone acting."""
    if isinstance(exc, ApiError):
        return passing(exc)
    # aiohttp's ClientError covers refused and reset connections and a server that hung up;
    # its total timeout raises asyncio's TimeoutError.
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError)


def namespace_going(exc: BaseException) -> bool:
    """The API server refused a write because the object's namespace is being deleted: its
    objects go with it, so a reconcile has nothing left to do (and nothing to log: deleting
    a namespace once filled the log with hundreds of tracebacks)."""
    return (
        isinstance(exc, ApiError)
        and exc.status in (403, 404, 409)
        and "being terminated" in exc.message
    )


def to_kopf(exc: BaseException, retry: int) -> kopf.TemporaryError | kopf.PermanentError | None:
    """kopf's error for `exc` (None: not classified, let kopf treat it as a bug)."""
    if isinstance(exc, SpecError):
        return kopf.PermanentError(f"{exc.reason}: {exc.message}")
    if may_pass(exc):
        return kopf.TemporaryError(_describe(exc), delay=backoff(retry))
    if isinstance(exc, ApiError):
        # Refused as built, and not a spec problem the reconcile caught: it will be refused
        # again the same way, so retrying only adds load.
        return kopf.PermanentError(f"the API server refused a request: {exc}")
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def settle(state: OperatorState, body: Mapping[str, Any], run: Awaitable[None]) -> None:
    """Run a reconcile that kopf will not retry (one started by another object's event or by
    the resync), so that one object's failure neither stops the others nor goes unretried:
    one that may pass is retried by the next resync pass."""
    try:
        await run
    except Exception as exc:
        if not namespace_going(exc):
            _settle_failure(state, body, exc)


def _settle_failure(state: OperatorState, body: Mapping[str, Any], exc: Exception) -> None:
    if isinstance(exc, SpecError):  # the condition and the Event say it already
        logger.info("%s cannot work as specified: %s", describe(body), exc.message)
    elif may_pass(exc):
        state.retry.add(key_of(body))
        logger.warning("reconcile of %s failed, retried by the resync: %s", describe(body), exc)
    else:
        logger.error("reconcile of %s failed", describe(body), exc_info=exc)
