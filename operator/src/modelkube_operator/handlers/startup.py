"""The operator's settings, and the shared state it starts with and closes."""

import asyncio
import contextlib
import logging

import kopf

from modelkube_operator import metrics
from modelkube_operator.api import GROUP
from modelkube_operator.handlers.indexes import ChildrenIndex, JobsIndex, OwnersIndex
from modelkube_operator.handlers.resync import resync_forever
from modelkube_operator.handlers.state import OperatorState
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import load_credentials

WORKER_LIMIT = 200
WORKER_IDLE_S = 0.5


def configure(settings: kopf.OperatorSettings) -> None:
    # kopf's bookkeeping lives in annotations under our domain, not in status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Only warnings become Events by themselves: at INFO kopf would post one per handler run
    # per object, an API call each. Condition transitions are still posted (kopf.info/warn).
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # One worker task per object with events is kopf's default; a burst of hundreds of new
    # objects would hold hundreds of handler coroutines and bodies at once. An idle worker
    # holds its slot, so it leaves soon instead of kopf's 5 s.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE_S


async def start(
    metrics_port: int, owners: OwnersIndex, children: ChildrenIndex, jobs: JobsIndex
) -> OperatorState:
    state = OperatorState(kube=Kube(load_credentials()))
    metrics.resources.owners = owners
    state.metrics = await metrics.serve(metrics_port) if metrics_port else None
    state.resync = asyncio.create_task(resync_forever(state, owners, children, jobs))
    return state


async def stop(state: OperatorState) -> None:
    if state.resync is not None:
        state.resync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.resync
    if state.metrics is not None:
        await state.metrics.cleanup()
    await state.kube.close()


def connection() -> kopf.ConnectionInfo:
    """kopf's own connection, from the same credentials as the operator's client."""
    creds = load_credentials()
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        insecure=creds.insecure,
        token=creds.token,
        certificate_path=creds.cert_file,
        private_key_path=creds.key_file,
        default_namespace=creds.namespace,
    )
