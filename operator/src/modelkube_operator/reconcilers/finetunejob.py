"""FineTuneJob → a batch/v1 Job, and its status from the Job's conditions."""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelkube_operator.api.finetunejob import FineTuneJobSpec, FineTuneJobStatus
from modelkube_operator.builders.common import Obj, Owner
from modelkube_operator.builders.training import build_job, build_trainer_rbac
from modelkube_operator.k8s.client import Kube
from modelkube_operator.reconcilers.common import (
    apply_child,
    invalid_spec,
    lock_for,
    owner_of,
    spec_error,
    write_status,
)
from modelkube_operator.reconcilers.errors import SpecError
from modelkube_operator.status.finetunejob import (
    finished,
    job_conditions,
    pending_reason,
    times,
    trainer_message,
)


async def reconcile_finetunejob(kube: Kube, body: Mapping[str, Any]) -> list[Obj]:
    """Create the Job once, follow its suspension, and status from it; return the condition
    transitions. Raises SpecError (after saying so in status) when the spec cannot work."""
    owner = owner_of(body)
    async with lock_for(owner):
        previous = body.get("status") or {}
        try:
            spec = FineTuneJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = spec_error(exc)
            raise await invalid(kube, owner, previous, message) from exc
        existing = await kube.get("batch/v1", "Job", owner.namespace, owner.name)
        if existing is None and finished(previous):
            # Its Job was deleted after it ended (by hand or a TTL): never train again unasked.
            return []
        if existing is None:
            for obj in build_trainer_rbac(owner):
                await apply_child(kube, owner, FineTuneJobStatus, previous, "Succeeded", obj)
            # A Job's pod template is immutable: create it once, then only watch it.
            job = await apply_child(
                kube, owner, FineTuneJobStatus, previous, "Succeeded", build_job(owner, spec)
            )
        elif bool(existing["spec"].get("suspend")) != spec.suspend and not finished(previous):
            # Suspending stops the pod (it checkpoints on SIGTERM); resuming starts a new one.
            job = await kube.merge_patch(
                "batch/v1", "Job", owner.namespace, owner.name, {"spec": {"suspend": spec.suspend}}
            )
        else:
            job = existing
        conds = job_conditions(
            job, await _trainer_error(kube, owner, job), await _pending(kube, owner, job)
        )
        start, completion = times(job)
        succeeded = any(c.type == "Succeeded" and c.status for c in conds)
        fields: Obj = {
            "startTime": start,
            "completionTime": completion,
            "adapterURI": spec.output.uri if succeeded else "",
        }
        return await write_status(kube, owner, FineTuneJobStatus, previous, conds, fields)


async def invalid(kube: Kube, owner: Owner, previous: Mapping[str, Any], message: str) -> SpecError:
    return await invalid_spec(kube, owner, FineTuneJobStatus, previous, "Succeeded", message)


async def _trainer_error(kube: Kube, owner: Owner, job: Obj) -> str:
    """Only a failed Job costs a pod list: its pods say why the trainer stopped."""
    failed = any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in job.get("status", {}).get("conditions", [])
    )
    if not failed:
        return ""
    pods = await kube.list("v1", "Pod", owner.namespace, f"modelkube.io/finetunejob={owner.name}")
    return trainer_message(pods)


async def _pending(kube: Kube, owner: Owner, job: Obj) -> str:
    """Only a Job with a pod that is not ready costs a pod list: the pod says why it waits."""
    status = job.get("status", {})
    if status.get("ready", 0) > 0 or not status.get("active", 0):
        return ""
    pods = await kube.list("v1", "Pod", owner.namespace, f"modelkube.io/finetunejob={owner.name}")
    return pending_reason(pods)
