"""The OpenAI fine-tuning jobs API on FineTuneJob resources in the runtime's namespace.

Enabled by `modelkube serve --fine-tuning-api`; the runtime's service account needs
create/get/list/patch on finetunejobs and create/get/list on configmaps there.
"""

import datetime
import secrets
from dataclasses import dataclass
from typing import Any

from modelkube_operator.api import API_VERSION
from modelkube_operator.k8s.client import Kube
from modelkube_operator.k8s.credentials import Credentials, CredentialsError, in_cluster

from modelkube_serving.errors import Conflict, InvalidRequest, NotFound
from modelkube_serving.finetune.dataset import DatasetError, split_validation
from modelkube_serving.protocol_fine_tuning import FineTuningJobCreate
from modelkube_serving.services.cluster_calls import checked, found
from modelkube_serving.services.files import FilesService
from modelkube_serving.services.fine_tuning_events import openai_events
from modelkube_serving.services.fine_tuning_mapping import (
    CANCELLED_ANNOTATION,
    MODEL_SERVICE_LABEL,
    Target,
    check_model,
    finetunejob,
    newest_first,
    openai_job,
    page,
    plan,
    resource_name,
    status_of,
)

Obj = dict[str, Any]
FIELD_MANAGER = "modelkube-runtime"
_BASE_SCHEMES = ("builtin://", "hf://", "pvc://")
_DNS_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class FineTuningSetupError(Exception):
    """`--fine-tuning-api` cannot work as configured; the message is one line for the user."""


@dataclass(frozen=True)
class FineTuningSettings:
    credentials: Credentials
    output_claim: str
    base_model_uri: str


def fine_tuning_settings(output_claim: str | None, base_model_uri: str) -> FineTuningSettings:
    """Check the flags and find the pod's service account, before the model loads."""
    if not output_claim:
        raise FineTuningSetupError("--fine-tuning-api needs --fine-tuning-output-claim")
    if len(output_claim) > 63 or not set(output_claim) <= _DNS_CHARS:
        raise FineTuningSetupError(f"--fine-tuning-output-claim {output_claim!r} is no claim name")
    if not base_model_uri.startswith(_BASE_SCHEMES):
        raise FineTuningSetupError(
            f"the base model to fine-tune must be a builtin://, hf:// or pvc:// URI, not "
            f"{base_model_uri!r}: set --fine-tuning-base-model"
        )
    try:
        credentials = in_cluster()
    except (CredentialsError, OSError) as exc:
        raise FineTuningSetupError(
            f"--fine-tuning-api needs in-cluster credentials: {exc}"
        ) from exc
    return FineTuningSettings(credentials, output_claim, base_model_uri)


class FineTuningService:
    def __init__(self, settings: FineTuningSettings, model_name: str) -> None:
        self.namespace = settings.credentials.namespace
        self.kube = Kube(settings.credentials, FIELD_MANAGER, timeout_s=10.0)
        self.files = FilesService(self.kube, self.namespace)
        self.target = Target(
            model_name, settings.base_model_uri, settings.output_claim, self.namespace
        )

    async def create(self, request: FineTuningJobCreate) -> Obj:
        check_model(request.model, self.target)
        dataset = await self.files.dataset(request.training_file)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        try:
            # The trainer holds out a tenth for validation: epochs count the rest.
            train, _ = split_validation(dataset, seed)
        except DatasetError as exc:
            raise InvalidRequest(f"Invalid training_file: {exc}", param="training_file") from exc
        steps = plan(request.effective_hyperparameters(), len(train.records))
        name = f"ft-{request.suffix or secrets.token_hex(4)}"
        body = finetunejob(request, self.target, name, steps, seed)
        taken = Conflict(
            f"A fine-tuning job named {name} already exists; choose another suffix.",
            param="suffix",
        )
        work = self.kube.create(body)
        created = await checked(work, self.namespace, conflict=taken)
        return openai_job(created, self.target)

    async def retrieve(self, job_id: str) -> Obj:
        return openai_job(await self._get(job_id), self.target)

    async def list(self, after: str | None, limit: int) -> Obj:
        selector = f"{MODEL_SERVICE_LABEL}={self.target.model_name}"
        work = self.kube.list(API_VERSION, "FineTuneJob", self.namespace, selector)
        ftjs = newest_first(await checked(work, self.namespace))
        return page([openai_job(o, self.target) for o in ftjs], after, limit)

    async def cancel(self, job_id: str) -> Obj:
        ftj = await self._get(job_id)
        status = status_of(ftj)
        if status in ("succeeded", "failed"):
            raise InvalidRequest(f"Job {job_id} has already {status}; it cannot be cancelled.")
        if status != "cancelled":
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {
                "metadata": {"annotations": {CANCELLED_ANNOTATION: now}},
                "spec": {"suspend": True},
            }
            name = ftj["metadata"]["name"]
            work = self.kube.merge_patch(API_VERSION, "FineTuneJob", self.namespace, name, patch)
            ftj = await checked(work, self.namespace, not_found=_no_such_job(job_id))
        return openai_job(ftj, self.target)

    async def events(self, job_id: str, after: str | None, limit: int) -> Obj:
        return page(openai_events(await self._get(job_id), self.target), after, limit)

    async def aclose(self) -> None:
        await self.kube.close()

    async def _get(self, job_id: str) -> Obj:
        name = resource_name(job_id)
        work = self.kube.get(API_VERSION, "FineTuneJob", self.namespace, name)
        ftj = await found(work, self.namespace, _no_such_job(job_id))
        if ftj["metadata"].get("labels", {}).get(MODEL_SERVICE_LABEL) != self.target.model_name:
            raise _no_such_job(job_id)  # another model's job: not this API's to show
        return ftj


def _no_such_job(job_id: str) -> NotFound:
    return NotFound(f"Could not find fine-tuning job {job_id}.", param="id", code="not_found")
