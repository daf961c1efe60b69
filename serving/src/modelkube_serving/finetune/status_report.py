"""Progress into the FineTuneJob's status, from the training pod itself.

The pod's service account may patch `finetunejobs/status` of its own FineTuneJob and nothing
else (the operator creates that Role per job), so no cluster-wide write is ever granted. A
thread sends the latest snapshot: at once for a milestone (a loss, a phase change), otherwise
at most every `interval_s`, so a slow API server never slows training. The thread runs the
shared async client in an event loop of its own.
"""

import asyncio
import datetime
import logging
import threading
from typing import Any

from modelkube_operator.api import API_VERSION
from modelkube_operator.k8s.client import ApiError, Kube
from modelkube_operator.k8s.credentials import Credentials

from modelkube_serving.finetune.progress import Snapshot

log = logging.getLogger("modelkube.finetune")
FIELD_MANAGER = "modelkube-finetune"


def progress_patch(s: Snapshot, now: datetime.datetime) -> dict[str, Any]:
    """The status merge patch for a snapshot (the FineTuneJob's `status.progress`)."""
    progress: dict[str, Any] = {
        "iteration": s.iteration,
        "totalIterations": s.total,
        "percent": s.percent,
        "etaSeconds": 0 if s.phase == "done" else (s.eta_seconds or 0),
        "updateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if s.train_loss is not None:
        progress["trainLoss"] = f"{s.train_loss:.4f}"
    if s.validation_loss is not None:
        progress["validationLoss"] = f"{s.validation_loss:.4f}"
    if s.iterations_per_second is not None:
        progress["iterationsPerSecond"] = f"{s.iterations_per_second:.3f}"
    return {"status": {"progress": progress}}


class StatusReporter:
    def __init__(self, cluster: Credentials, name: str, interval_s: float = 5.0) -> None:
        self._name = name
        self._namespace = cluster.namespace
        self._interval = interval_s
        self._kube = Kube(cluster, FIELD_MANAGER, timeout_s=10.0)
        self._lock = threading.Lock()
        self._pending: Snapshot | None = None
        self._wake = threading.Event()
        self._closing = False
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="status-report", daemon=True)
        self._thread.start()

    def update(self, snapshot: Snapshot, milestone: bool) -> None:
        with self._lock:
            self._pending = snapshot
        if milestone:
            self._wake.set()

    def close(self) -> None:
        """Send what is pending, then stop."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                closing = self._closing  # read before taking the snapshot: the last one is sent
                with self._lock:
                    snapshot, self._pending = self._pending, None
                if snapshot is not None:
                    loop.run_until_complete(self._send(snapshot))
                if closing:
                    return
        finally:
            loop.run_until_complete(self._kube.close())
            loop.close()

    async def _send(self, snapshot: Snapshot) -> None:
        patch = progress_patch(snapshot, datetime.datetime.now(datetime.UTC))
        try:
            await self._kube.merge_patch(
                API_VERSION, "FineTuneJob", self._namespace, self._name, patch, subresource="status"
            )
        except (ApiError, OSError) as exc:  # OSError: the token file is gone
            self._failed(str(exc))
            return
        self._failures = 0

    def _failed(self, why: str) -> None:
        # Training goes on without its status: losing a report must never lose the run.
        self._failures += 1
        if self._failures in (1, 10) or self._failures % 100 == 0:
            log.warning("cannot report progress to the FineTuneJob status: %s", why)
