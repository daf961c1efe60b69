"""A reconcile's failures, classified into kopf's retry policy; the per-object lock table."""

import asyncio
from typing import Any, cast

import kopf
import pytest
from modelkube_operator.builders.common import Owner
from modelkube_operator.handlers import modelservice
from modelkube_operator.handlers.errors import (
    BACKOFF_MAX_S,
    backoff,
    may_pass,
    namespace_going,
    settle,
    to_kopf,
)
from modelkube_operator.handlers.resync import resync_once
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.k8s.client import ApiError, Kube
from modelkube_operator.k8s.credentials import Credentials
from modelkube_operator.reconcilers.common import lock_for, locks_held
from modelkube_operator.reconcilers.errors import SpecError, says_new

from tests.serving.runtime_process import free_port


def test_backoff_doubles_from_a_second_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(9) == 300.0 == BACKOFF_MAX_S
    assert backoff(10_000) == BACKOFF_MAX_S  # no overflow after a long outage


@pytest.mark.parametrize("status", [401, 403, 404, 409, 429, 500, 503, 504])
def test_a_refusal_that_may_pass_is_a_temporary_error_with_backoff(status: int) -> None:
    error = to_kopf(ApiError(status, "try again"), retry=3)
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay == 8.0


@pytest.mark.parametrize("status", [400, 405, 413, 415, 422])
def test_a_request_refused_as_built_is_permanent(status: int) -> None:
    assert not may_pass(ApiError(status, "invalid"))
    assert isinstance(to_kopf(ApiError(status, "invalid"), retry=0), kopf.PermanentError)


def test_a_spec_that_cannot_work_is_permanent_and_a_bug_is_left_to_kopf() -> None:
    error = to_kopf(SpecError("metadata.name: not a DNS-1035 label", fresh=True), retry=0)
    assert isinstance(error, kopf.PermanentError)
    assert str(error) == "InvalidSpec: metadata.name: not a DNS-1035 label"
    assert to_kopf(KeyError("spec"), retry=0) is None


@pytest.mark.asyncio
async def test_an_api_server_that_does_not_answer_is_a_temporary_error() -> None:
    # A real connection to a port nobody listens on: what the client raises when the API
    # server restarts.
    kube = Kube(Credentials(server=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(ApiError) as raised:
            await kube.get("v1", "ConfigMap", "default", "x")
    finally:
        await kube.close()
    assert raised.value.status == 0  # the client's word for "not reached"
    assert isinstance(to_kopf(raised.value, retry=0), kopf.TemporaryError)


def test_a_spec_error_is_fresh_only_when_the_condition_says_something_new() -> None:
    cond = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "bad"}
    assert says_new({}, "Ready", "bad")
    assert not says_new({"conditions": [cond]}, "Ready", "bad")
    assert says_new({"conditions": [cond]}, "Ready", "worse")
    assert says_new({"conditions": [{**cond, "reason": "Progressing"}]}, "Ready", "bad")


def owner(name: str) -> Owner:
    return Owner("modelkube.io/v1alpha1", "ModelService", name, "ns", f"uid-{name}", 1)


@pytest.mark.asyncio
async def test_the_lock_table_keeps_only_locks_in_use() -> None:
    before = locks_held()
    released = asyncio.Event()
    entered = {tag: asyncio.Event() for tag in ("first", "second", "other")}
    order: list[str] = []

    async def reconcile(name: str, tag: str) -> None:
        async with lock_for(owner(name)):
            order.append(f"{tag} in")
            entered[tag].set()
            await released.wait()
            order.append(f"{tag} out")

    first = asyncio.create_task(reconcile("a", "first"))
    second = asyncio.create_task(reconcile("a", "second"))
    other = asyncio.create_task(reconcile("b", "other"))
    # Tasks start in order: by the time "other" is in, "second" waits for "a"'s lock.
    await entered["first"].wait()
    await entered["other"].wait()
    assert locks_held() == before + 2  # "a" (held, one waiting) and "b"
    assert order == ["first in", "other in"]  # the second waits for the first
    released.set()
    await asyncio.gather(first, second, other)
    assert order.index("first out") < order.index("second in")
    # Every object reconciled, deleted or not, leaves nothing behind.
    assert locks_held() == before


@pytest.mark.asyncio
async def test_a_passing_failure_outside_kopfs_retries_is_retried_by_the_resync() -> None:
    # A ModelService whose reconcile meets an API server that does not answer (a real
    # connection to a closed port), as a child's event or the resync would run it.
    body = {
        "apiVersion": "modelkube.io/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"model": {"uri": "builtin://tiny"}},
        "status": {"observedGeneration": 1},
    }
    key = ("ModelService", "ns", "m")
    owners: dict[Any, list[dict[str, Any]]] = {key: [body]}
    no_children: dict[Any, list[str]] = {key: ["ConfigMap", "Deployment", "Service"]}
    state = OperatorState(kube=Kube(Credentials(server=f"http://127.0.0.1:{free_port()}")))
    try:
        index = cast(Any, owners)
        await settle(
            state, body, modelservice.reconcile(state, body, cast(Any, no_children), cast(Any, {}))
        )
        assert state.retry == {key}
        # In sync by the indexes, so only the retry makes the pass reconcile it, and fail again.
        await resync_once(state, index, cast(Any, no_children), cast(Any, {}), set())
        assert state.retry == {key}
        owners.clear()  # deleted: nothing retries it any more
        await resync_once(state, index, cast(Any, no_children), cast(Any, {}), set())
        assert state.retry == set()
    finally:
        await state.kube.close()


def test_a_namespace_being_deleted_is_nothing_to_retry_or_log() -> None:
    going = ApiError(
        403,
        'configmaps "x" is forbidden: unable to create new content in namespace gone because '
        "it is being terminated",
    )
    assert namespace_going(going)
    assert not namespace_going(ApiError(403, 'configmaps "x" is forbidden: RBAC says no'))
    assert not namespace_going(ValueError("being terminated"))
