"""OpenAI fine-tuning requests <-> FineTuneJob and ConfigMap objects: the pure mappings."""

import re
from typing import Any

import httpx
import pytest
from modelkube_operator.k8s.client import ApiError
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from pydantic import ValidationError

from modelkube_serving.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from modelkube_serving.protocol_fine_tuning import (
    FineTuningJobCreate,
    Hyperparameters,
    MultipartError,
    Upload,
    parse_upload,
)
from modelkube_serving.services.cluster_calls import as_api_error
from modelkube_serving.services.files import (
    MAX_FILE_BYTES,
    checked_text,
    file_configmap,
    openai_file,
)
from modelkube_serving.services.fine_tuning_events import openai_events
from modelkube_serving.services.fine_tuning_mapping import (
    Plan,
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

TARGET = Target("tiny", "builtin://tiny", "adapters", "team-a")
CRD_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
CHAT = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'


def request(**fields: Any) -> FineTuningJobCreate:
    return FineTuningJobCreate.model_validate(
        {"model": "tiny", "training_file": "file-abc123", **fields}
    )


def ftj(
    conditions: list[dict[str, str]] | None = None, suspend: bool = False, **status: Any
) -> dict[str, Any]:
    body = finetunejob(request(), TARGET, "ft-demo", Plan(3, 4, 1.0, 8), seed=7)
    body["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    body["spec"]["suspend"] = suspend
    if conditions is not None:
        body["status"] = {"conditions": conditions, **status}
    return body


def cond(type_: str, status: str = "True", **extra: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": type_,
        "lastTransitionTime": "2025-01-01T00:10:00Z",
        **extra,
    }


def test_plan_defaults_to_three_epochs_of_batches_of_four() -> None:
    steps = plan(Hyperparameters(), records=10)
    assert (steps.n_epochs, steps.batch_size, steps.iterations) == (3, 4, 8)  # ceil(30 / 4)
    assert steps.learning_rate == "0.00001"


def test_plan_caps_the_batch_at_the_number_of_examples() -> None:
    steps = plan(Hyperparameters(n_epochs=2, batch_size=16), records=3)
    assert (steps.batch_size, steps.iterations) == (3, 2)


@pytest.mark.parametrize(
    ("multiplier", "rate"),
    [(2, "0.00002"), (0.1, "0.000001"), (0.5, "0.000005"), (1e-3, "0.00000001")],
)
def test_learning_rate_is_a_decimal_string_the_crd_accepts(multiplier: float, rate: str) -> None:
    steps = plan(Hyperparameters(learning_rate_multiplier=multiplier), records=4)
    assert steps.learning_rate == rate
    assert CRD_DECIMAL.match(steps.learning_rate), steps.learning_rate


def test_plan_refuses_more_iterations_than_the_crd_allows() -> None:
    with pytest.raises(InvalidRequest, match="over the limit"):
        plan(Hyperparameters(n_epochs=100, batch_size=1), records=20_000)


def test_finetunejob_trains_a_lora_adapter_on_the_uploaded_file() -> None:
    body = finetunejob(request(suffix="demo"), TARGET, "ft-demo", Plan(3, 4, 2.0, 8), seed=7)
    assert body["apiVersion"] == "modelkube.io/v1alpha1"
    assert body["metadata"]["labels"] == {"modelkube.io/model-service": "tiny"}
    assert body["spec"] == {
        "baseModel": {"uri": "builtin://tiny"},
        "dataset": {"configMapRef": {"name": "file-abc123", "key": "train.jsonl"}},
        "method": "lora",
        "hyperparameters": {
            "iterations": 8,
            "batchSize": 4,
            "learningRate": "0.00002",
            "seed": 7,
        },
        "output": {"uri": "pvc://adapters/ft-demo"},
    }


def test_model_is_the_served_name_or_the_base_uri() -> None:
    check_model("tiny", TARGET)
    check_model("builtin://tiny", TARGET)
    with pytest.raises(ModelNotFound) as caught:
        check_model("gpt-4o-mini", TARGET)
    assert caught.value.status_code == 404
    assert caught.value.body()["error"]["code"] == "model_not_found"


def test_method_hyperparameters_win_over_the_deprecated_field() -> None:
    req = request(
        hyperparameters={"n_epochs": 1},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}},
    )
    assert req.effective_hyperparameters().n_epochs == 5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"suffix": "My_Model"}, "suffix must be"),
        ({"suffix": "x" * 61}, "suffix must be"),
        ({"validation_file": "file-1"}, "validation files are not supported"),
        ({"method": {"type": "dpo"}}, "only supervised"),
        ({"hyperparameters": {"n_epochs": 0}}, "greater than or equal to 1"),
        ({"integrations": []}, "Extra inputs"),
    ],
)
def test_requests_the_runtime_cannot_honour_are_refused(fields: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        request(**fields)


@pytest.mark.parametrize(
    ("conditions", "suspend", "status"),
    [
        (None, False, "validating_files"),
        ([cond("Running", "False")], False, "queued"),
        ([cond("Running")], False, "running"),
        ([cond("Running")], True, "cancelled"),
        ([cond("Succeeded")], False, "succeeded"),
        ([cond("Failed", message="BackoffLimitExceeded")], False, "failed"),
        ([cond("Succeeded", "False", reason="InvalidSpec")], False, "failed"),
    ],
)
def test_status_follows_the_conditions(
    conditions: list[dict[str, str]] | None, suspend: bool, status: str
) -> None:
    assert status_of(ftj(conditions, suspend)) == status


def test_succeeded_job_names_its_fine_tuned_model() -> None:
    body = ftj([cond("Succeeded")], completionTime="2025-01-01T00:05:00Z")
    job = FineTuningJob.model_validate(openai_job(body, TARGET))
    assert job.id == "ftjob-ft-demo"
    assert job.status == "succeeded"
    assert job.fine_tuned_model == "tiny:ft-demo"
    assert job.model == "tiny"
    assert job.training_file == "file-abc123"
    assert (job.created_at, job.finished_at) == (1735689600, 1735689900)
    assert job.trained_tokens is None
    assert job.seed == 7
    assert job.hyperparameters.n_epochs == 3
    assert job.hyperparameters.batch_size == 4
    assert job.hyperparameters.learning_rate_multiplier == 1.0


def test_failed_job_carries_the_reason() -> None:
    failed = cond("Failed", message="Job has reached the specified backoff limit")
    failed["reason"] = "BackoffLimitExceeded"
    job = FineTuningJob.model_validate(openai_job(ftj([failed]), TARGET))
    assert job.status == "failed"
    assert job.fine_tuned_model is None
    assert job.error is not None
    assert job.error.code == "BackoffLimitExceeded"
    assert "backoff limit" in job.error.message
    assert job.finished_at == 1735690200


def test_running_job_estimates_its_finish_from_the_last_report() -> None:
    progress: dict[str, Any] = {"iteration": 20, "totalIterations": 60, "etaSeconds": 120}
    progress["updateTime"] = "2025-01-01T00:02:00Z"
    job = openai_job(ftj([cond("Running")], progress=progress), TARGET)
    assert job["status"] == "running"
    assert job["estimated_finish"] == 1735689600 + 120 + 120
    assert job["finished_at"] is None


def test_events_are_milestones_newest_first() -> None:
    progress = {
        "iteration": 20,
        "totalIterations": 60,
        "trainLoss": "1.234",
        "validationLoss": "1.456",
        "updateTime": "2025-01-01T00:03:00Z",
    }
    body = ftj(
        [cond("Succeeded")],
        startTime="2025-01-01T00:01:00Z",
        completionTime="2025-01-01T00:05:00Z",
        progress=progress,
    )
    events = [FineTuningJobEvent.model_validate(e) for e in openai_events(body, TARGET)]
    assert [e.message for e in events] == [
        "The job has successfully completed",
        "New fine-tuned model created: tiny:ft-demo",
        "Step 20/60: training loss=1.234, validation loss=1.456",
        "Fine-tuning job started",
        "Created fine-tuning job: ftjob-ft-demo",
    ]
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert events[2].type == "metrics"
    assert events[2].data == {
        "step": 20,
        "total_steps": 60,
        "train_loss": 1.234,
        "valid_loss": 1.456,
    }
    assert len({e.id for e in events}) == len(events)


def test_failed_and_cancelled_jobs_end_with_their_event() -> None:
    failed = openai_events(ftj([cond("Failed", message="OOMKilled")]), TARGET)
    assert failed[0]["level"] == "error"
    assert failed[0]["message"] == "Fine-tuning job failed: OOMKilled"
    cancelled = ftj([cond("Running")], suspend=True)
    cancelled["metadata"]["annotations"]["modelkube.io/cancelled-at"] = "2025-01-01T00:09:00Z"
    assert openai_events(cancelled, TARGET)[0]["message"] == "Fine-tuning job cancelled"
    assert openai_job(cancelled, TARGET)["finished_at"] == 1735690140


def test_pages_follow_the_after_cursor() -> None:
    items = [{"id": f"x{i}"} for i in range(5)]
    first = page(items, None, 2)
    assert [i["id"] for i in first["data"]] == ["x0", "x1"]
    assert first["has_more"] is True
    last = page(items, "x2", 2)
    assert [i["id"] for i in last["data"]] == ["x3", "x4"]
    assert last["has_more"] is False
    assert page(items, "gone", 2)["data"] == []


def test_jobs_list_newest_first() -> None:
    old, new = ftj(), ftj()
    new["metadata"] = {
        **new["metadata"],
        "name": "ft-new",
        "creationTimestamp": "2025-02-01T00:00:00Z",
    }
    assert [o["metadata"]["name"] for o in newest_first([old, new])] == ["ft-new", "ft-demo"]


@pytest.mark.parametrize("openai_id", ["ft-demo", "ftjob-", "ftjob-Bad_Name", "ftjob-a/b"])
def test_ids_that_name_no_finetunejob_are_not_found(openai_id: str) -> None:
    with pytest.raises(NotFound):
        resource_name(openai_id)
    assert resource_name("ftjob-ft-demo") == "ft-demo"


def test_uploaded_file_becomes_a_labelled_configmap() -> None:
    text = checked_text(Upload("train.jsonl", f"{CHAT}\n{CHAT}\n".encode(), "fine-tune"))
    cm = file_configmap("file-0a1b", "mine.jsonl", text, "team-a")
    assert cm["metadata"]["labels"] == {"modelkube.io/purpose": "fine-tune"}
    assert cm["metadata"]["namespace"] == "team-a"
    cm["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    file = openai_file(cm)
    assert file is not None
    obj = FileObject.model_validate(file)
    assert (obj.id, obj.filename, obj.bytes, obj.purpose) == (
        "file-0a1b",
        "mine.jsonl",
        len(text.encode()),
        "fine-tune",
    )
    assert openai_file({"metadata": {"name": "other"}, "data": {"x": "y"}}) is None


@pytest.mark.parametrize(
    ("upload", "error", "message"),
    [
        (Upload("t.jsonl", CHAT.encode(), "assistants"), InvalidRequest, "Only purpose"),
        (
            Upload("t.jsonl", b"x" * (MAX_FILE_BYTES + 1), "fine-tune"),
            PayloadTooLarge,
            "ConfigMap",
        ),
        (
            Upload("t.jsonl", f'{CHAT}\n{{"messages": 3}}\n'.encode(), "fine-tune"),
            InvalidRequest,
            "t.jsonl line 2: 'messages' must be",
        ),
        (Upload("t.jsonl", b"\n\xff\n", "fine-tune"), InvalidRequest, "t.jsonl line 2: not UTF-8"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason(
    upload: Upload, error: type[APIError], message: str
) -> None:
    with pytest.raises(error, match=message):
        checked_text(upload)


def test_multipart_uploads_parse_as_the_sdk_encodes_them() -> None:
    sent = httpx.Request(
        "POST",
        "http://x/v1/files",
        data={"purpose": "fine-tune"},
        files={"file": ("mine.jsonl", CHAT.encode(), "application/jsonl")},
    )
    upload = parse_upload(sent.headers["content-type"], sent.read())
    assert upload == Upload("mine.jsonl", CHAT.encode(), "fine-tune")
    no_file = httpx.Request("POST", "http://x", data={"purpose": "p"}, files={"f": b"x"})
    with pytest.raises(MultipartError, match="'file'"):
        parse_upload(no_file.headers["content-type"], no_file.read())
    with pytest.raises(MultipartError, match="multipart/form-data"):
        parse_upload("application/json", b"{}")
    latin = httpx.Request(
        "POST", "http://x", data={"purpose": "fine-tune"}, files={"file": b"x"}
    )  # the purpose's bytes swapped for ones that are not UTF-8 (a 500 before)
    body = latin.read().replace(b"fine-tune", b"\xed\xa0\x80")
    with pytest.raises(MultipartError, match="'purpose': it is not UTF-8"):
        parse_upload(latin.headers["content-type"], body)


def test_rbac_refusals_name_the_missing_permission() -> None:
    refused = ApiError(403, "cannot create", "Forbidden", "create", "finetunejobs.modelkube.io")
    error = as_api_error(refused, "team-a")
    assert isinstance(error, PermissionDenied)
    assert error.status_code == 403
    assert "may not create finetunejobs.modelkube.io in namespace team-a" in error.message
