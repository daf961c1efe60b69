"""OpenAI fine-tuning jobs <-> FineTuneJob resources: pure functions, no I/O.

A job's OpenAI id is `ftjob-<FineTuneJob name>`; its fine-tuned model is served as
`<served model>:<FineTuneJob name>` once it succeeds (the operator adds the adapter to the
ModelService named in the `modelkube.io/model-service` label).
"""

import datetime
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelkube_operator.api import API_VERSION

from modelkube_serving.errors import InvalidRequest, ModelNotFound, NotFound
from modelkube_serving.protocol_fine_tuning import FineTuningJobCreate, Hyperparameters

Obj = dict[str, Any]
JOB_PREFIX = "ftjob-"
MODEL_SERVICE_LABEL = "modelkube.io/model-service"
EPOCHS_ANNOTATION = "modelkube.io/n-epochs"
CANCELLED_ANNOTATION = "modelkube.io/cancelled-at"
BASE_LEARNING_RATE = Decimal("1e-5")
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 4
MAX_ITERATIONS = 1_000_000  # the CRD's limit
_DNS_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Target:
    """What this runtime fine-tunes: its served model, that model's URI, where adapters go."""

    model_name: str
    base_model_uri: str
    output_claim: str
    namespace: str


@dataclass(frozen=True)
class Plan:
    n_epochs: int
    batch_size: int
    multiplier: float
    iterations: int

    @property
    def learning_rate(self) -> str:
        rate = Decimal(repr(self.multiplier)) * BASE_LEARNING_RATE
        return format(rate.normalize(), "f")


def check_model(model: str, target: Target) -> None:
    if model not in (target.model_name, target.base_model_uri):
        raise ModelNotFound(
            f"The model '{model}' does not exist or you do not have access to it; "
            f"this runtime fine-tunes '{target.model_name}'.",
            param="model",
        )


def plan(hp: Hyperparameters, records: int) -> Plan:
    """Epochs over `records` training examples, in iterations of `batch_size` examples."""
    n_epochs = DEFAULT_EPOCHS if hp.n_epochs == "auto" else hp.n_epochs
    batch = DEFAULT_BATCH_SIZE if hp.batch_size == "auto" else hp.batch_size
    batch = max(1, min(batch, records))
    multiplier = 1.0 if hp.learning_rate_multiplier == "auto" else hp.learning_rate_multiplier
    iterations = math.ceil(n_epochs * records / batch)
    if iterations > MAX_ITERATIONS:
        raise InvalidRequest(
            f"{n_epochs} epochs of {records} examples in batches of {batch} make {iterations} "
            f"iterations, over the limit of {MAX_ITERATIONS}.",
            param="hyperparameters",
        )
    return Plan(n_epochs, batch, multiplier, iterations)


def finetunejob(request: FineTuningJobCreate, target: Target, name: str, p: Plan, seed: int) -> Obj:
    """The FineTuneJob for a create request; `name` is a DNS label, `p` from `plan`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FineTuneJob",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {MODEL_SERVICE_LABEL: target.model_name},
            "annotations": {EPOCHS_ANNOTATION: str(p.n_epochs)},
        },
        "spec": {
            "baseModel": {"uri": target.base_model_uri},
            "dataset": {"configMapRef": {"name": request.training_file, "key": "train.jsonl"}},
            "method": "lora",
            "hyperparameters": {
                "iterations": p.iterations,
                "batchSize": p.batch_size,
                "learningRate": p.learning_rate,
                "seed": seed,
            },
            "output": {"uri": f"pvc://{target.output_claim}/{name}"},
        },
    }


def job_id(name: str) -> str:
    return f"{JOB_PREFIX}{name}"


def resource_name(openai_id: str) -> str:
    """The FineTuneJob's name for an OpenAI job id; NotFound for an id that is not ours."""
    name = openai_id.removeprefix(JOB_PREFIX)
    if name == openai_id or not 0 < len(name) <= 63 or not set(name) <= _DNS_CHARS:
        raise NotFound(f"Could not find fine-tuning job {openai_id}.", code="not_found")
    return name


def status_of(ftj: Obj) -> str:
    if condition(ftj, "Succeeded"):
        return "succeeded"
    if failure(ftj) is not None:
        return "failed"
    if ftj.get("spec", {}).get("suspend"):
        return "cancelled"
    if condition(ftj, "Running"):
        return "running"
    return "queued" if ftj.get("status", {}).get("conditions") else "validating_files"


def openai_job(ftj: Obj, target: Target) -> Obj:
    meta, spec = ftj["metadata"], ftj.get("spec", {})
    hp = spec.get("hyperparameters", {})
    status = status_of(ftj)
    hyperparameters = {
        "n_epochs": _int_or_none(meta.get("annotations", {}).get(EPOCHS_ANNOTATION)),
        "batch_size": hp.get("batchSize", DEFAULT_BATCH_SIZE),
        "learning_rate_multiplier": float(
            Decimal(hp.get("learningRate", "1e-5")) / BASE_LEARNING_RATE
        ),
    }
    base = spec.get("baseModel", {}).get("uri", "")
    return {
        "object": "fine_tuning.job",
        "id": job_id(meta["name"]),
        "model": target.model_name if base == target.base_model_uri else base,
        "created_at": unix(meta.get("creationTimestamp")) or 0,
        "finished_at": _finished_at(ftj, status),
        "fine_tuned_model": (
            f"{target.model_name}:{meta['name']}" if status == "succeeded" else None
        ),
        "organization_id": meta.get("namespace", target.namespace),
        "result_files": [],
        "status": status,
        "validation_file": None,
        "training_file": spec.get("dataset", {}).get("configMapRef", {}).get("name", ""),
        "hyperparameters": hyperparameters,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "trained_tokens": None,
        "error": failure(ftj) if status == "failed" else None,
        "seed": hp.get("seed", 0),
        "estimated_finish": _estimated_finish(ftj) if status == "running" else None,
        "integrations": [],
        "metadata": None,
    }


def page(items: list[Obj], after: str | None, limit: int) -> Obj:
    """OpenAI's cursor page: the `limit` items after the one whose id is `after`."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = items[start : start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


def newest_first(ftjs: list[Obj]) -> list[Obj]:
    return sorted(
        ftjs,
        key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]),
        reverse=True,
    )


def condition(ftj: Obj, type_: str) -> Obj | None:
    for cond in ftj.get("status", {}).get("conditions", []):
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def failure(ftj: Obj) -> Obj | None:
    """OpenAI's `error` for a failed job: the Job failed, or the spec can never run."""
    failed = condition(ftj, "Failed")
    if failed is not None:
        message = failed.get("message") or "training failed"
        return {"code": failed.get("reason", "Failed"), "message": message, "param": None}
    for cond in ftj.get("status", {}).get("conditions", []):
        if cond.get("reason") == "InvalidSpec":
            return {"code": "invalid_spec", "message": cond.get("message", ""), "param": None}
    return None


def _finished_at(ftj: Obj, status: str) -> int | None:
    if status == "succeeded":
        return unix(ftj.get("status", {}).get("completionTime")) or _changed(ftj, "Succeeded")
    if status == "failed":
        return _changed(ftj, "Failed")
    if status == "cancelled":
        return unix(ftj["metadata"].get("annotations", {}).get(CANCELLED_ANNOTATION))
    return None


def _changed(ftj: Obj, type_: str) -> int | None:
    cond = condition(ftj, type_)
    return unix(cond.get("lastTransitionTime")) if cond else None


def _estimated_finish(ftj: Obj) -> int | None:
    progress = ftj.get("status", {}).get("progress", {})
    reported = unix(progress.get("updateTime"))
    eta = progress.get("etaSeconds") or 0
    return reported + eta if reported is not None and eta > 0 else None


def unix(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    try:
        return int(datetime.datetime.fromisoformat(timestamp).timestamp())
    except ValueError:
        return None


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
