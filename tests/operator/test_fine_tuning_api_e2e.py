"""The OpenAI fine-tuning API, driven by the `openai` SDK, on FineTuneJobs in a real cluster.

One runtime runs under a ServiceAccount bound to a least-privilege Role; the real operator turns
its FineTuneJobs into Jobs, and kwok ends their pods so the real Job controller finishes them.
"""

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob

from tests.controlplane.cluster import ControlPlane
from tests.operator.harness import (
    OperatorProcess,
    adapters_claim,
    finish_training_pod,
    get_json,
    wait_until,
)
from tests.serving import test_fuzz as fuzz
from tests.serving.runtime_process import RuntimeProcess

NAMESPACE = "test-ftapi"
TUNER = "tuner"
CHAT = {
    "messages": [
        {"role": "user", "content": "What is modelkube?"},
        {"role": "assistant", "content": "An operator that serves and tunes models."},
    ]
}
TRAIN = "\n".join(json.dumps(CHAT) for _ in range(10)).encode()


def access(namespace: str) -> list[dict[str, Any]]:
    """The runtime's least privilege, and a second account with no grant at all."""
    meta = {"name": TUNER, "namespace": namespace}
    rules = [
        {
            "apiGroups": ["modelkube.io"],
            "resources": ["finetunejobs"],
            "verbs": ["create", "get", "list", "patch"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "stranger", "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TUNER},
            "subjects": [{"kind": "ServiceAccount", "name": TUNER, "namespace": namespace}],
        },
    ]


def token(cp: ControlPlane, account: str) -> str:
    result = cp.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=1h")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def sa_dir(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cp = control_plane
    cp.kubectl("create", "namespace", NAMESPACE)
    docs = [*access(NAMESPACE), *adapters_claim(NAMESPACE)]
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    path = tmp_path_factory.mktemp("serviceaccount")
    (path / "token").write_text(token(cp, TUNER))
    shutil.copy(cp.ca_file, path / "ca.crt")
    (path / "namespace").write_text(NAMESPACE)
    return path


@pytest.fixture(scope="module")
def runtime(
    control_plane: ControlPlane, sa_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.api_port),
        "MODELKUBE_SERVICEACCOUNT_DIR": str(sa_dir),
    }
    args = ["--model", "builtin://tiny", "--fine-tuning-api", "--fine-tuning-output-claim"]
    log = tmp_path_factory.mktemp("runtime") / "runtime.log"
    proc = RuntimeProcess([*args, "adapters"], log, env=env).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(runtime: RuntimeProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def upload(client: openai.OpenAI, content: bytes = TRAIN) -> str:
    return client.files.create(file=("train.jsonl", content), purpose="fine-tune").id


def status_of(client: openai.OpenAI, job_id: str, wanted: str) -> bool:
    return client.fine_tuning.jobs.retrieve(job_id).status == wanted


def test_a_fine_tune_runs_from_upload_to_a_served_model(
    control_plane: ControlPlane, operator: OperatorProcess, client: openai.OpenAI
) -> None:
    cp = control_plane
    file = client.files.create(file=("mine.jsonl", TRAIN), purpose="fine-tune")
    assert (file.status, file.filename, file.bytes) == ("processed", "mine.jsonl", len(TRAIN))
    assert client.files.retrieve(file.id).id == file.id
    assert file.id in [f.id for f in client.files.list()]
    configmap = get_json(cp, "configmap", file.id, "-n", NAMESPACE) or {}
    assert configmap["metadata"]["labels"] == {"modelkube.io/purpose": "fine-tune"}
    assert configmap["data"]["train.jsonl"] == TRAIN.decode()

    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=file.id,
        hyperparameters={"n_epochs": 2, "batch_size": 3},
        suffix="e2e",
        seed=3,
    )
    assert (job.id, job.model, job.seed) == ("ftjob-ft-e2e", "tiny", 3)
    assert job.status in ("validating_files", "queued")
    spec = (get_json(cp, "finetunejob", "ft-e2e", "-n", NAMESPACE) or {})["spec"]
    # 10 examples, 1 held out for validation: 2 epochs of 9 in batches of 3.
    wanted = {"iterations": 6, "batchSize": 3, "learningRate": "0.00001", "seed": 3}
    assert {k: spec["hyperparameters"][k] for k in wanted} == wanted
    assert spec["dataset"] == {"configMapRef": {"name": file.id, "key": "train.jsonl"}}
    assert spec["output"] == {"uri": "pvc://adapters/ft-e2e"}
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    wait_until(lambda: status_of(client, job.id, "running"), 60, f"running\n{operator.log()}")
    progress = {"iteration": 2, "totalIterations": 6, "trainLoss": "1.2340", "etaSeconds": 30}
    patch = json.dumps({"status": {"progress": progress}})
    cp.kubectl(
        "patch",
        "ftj",
        "ft-e2e",
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert "Step 2/6: training loss=1.2340" in messages
    assert messages[-1] == "Created fine-tuning job: ftjob-ft-e2e"

    finish_training_pod(cp, NAMESPACE, "ft-e2e", 0)
    wait_until(lambda: status_of(client, job.id, "succeeded"), 60, f"success\n{operator.log()}")
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == "tiny:ft-e2e"
    assert done.finished_at is not None
    assert done.finished_at >= done.created_at
    events = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert [e.message for e in events.data] == [
        "The job has successfully completed",
        "New fine-tuned model created: tiny:ft-e2e",
    ]
    assert events.has_more


def test_cancel_suspends_the_finetunejob(
    control_plane: ControlPlane, operator: OperatorProcess, client: openai.OpenAI
) -> None:
    job = client.fine_tuning.jobs.create(model="builtin://tiny", training_file=upload(client))
    name = job.id.removeprefix("ftjob-")
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    ftj = get_json(control_plane, "finetunejob", name, "-n", NAMESPACE) or {}
    assert ftj["spec"]["suspend"] is True
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    events = client.fine_tuning.jobs.list_events(job.id)
    assert events.data[0].message == "Fine-tuning job cancelled"


def test_a_bad_training_file_is_refused_with_its_line(client: openai.OpenAI) -> None:
    bad = TRAIN + b'\n{"messages": [{"role": "user", "content": "hi"}]}\n'
    with pytest.raises(openai.BadRequestError) as caught:
        upload(client, bad)
    assert "line 11: no assistant message" in caught.value.message
    with pytest.raises(openai.APIStatusError) as too_big:
        upload(client, b"x" * (900 * 1024 + 1))
    assert too_big.value.status_code == 413
    assert "ConfigMap" in too_big.value.message


def test_unknown_jobs_files_and_models_are_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-ft-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list_events("ftjob-ft-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-0123abcd")
    with pytest.raises(openai.NotFoundError) as model:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(client))
    assert model.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as training:
        client.fine_tuning.jobs.create(model="tiny", training_file="file-0123abcd")
    assert training.value.param == "training_file"


@contextmanager
def presenting(sa_dir: Path, new_token: str) -> Iterator[None]:
    """The runtime reads its token per request: swap in another account's for a while."""
    path = sa_dir / "token"
    old = path.read_text()
    path.write_text(new_token)
    try:
        yield
    finally:
        path.write_text(old)


def test_missing_permissions_are_named_not_a_500(
    control_plane: ControlPlane, sa_dir: Path, client: openai.OpenAI
) -> None:
    with presenting(sa_dir, token(control_plane, "stranger")):
        with pytest.raises(openai.PermissionDeniedError) as upload_refused:
            upload(client)
        with pytest.raises(openai.PermissionDeniedError) as list_refused:
            client.fine_tuning.jobs.list()
    assert "may not create configmaps in namespace test-ftapi" in upload_refused.value.message
    assert "'list' on 'finetunejobs.modelkube.io'" in list_refused.value.message
    assert client.fine_tuning.jobs.list() is not None  # its own token works again


# Generated uploads and job requests: never a 5xx, always OpenAI's error body or a file/job
# the `openai` types accept. Multipart bodies are written here so that every part can be
# wrong: names, filenames, purposes and contents of any bytes, and the framing itself.
ROW = st.fixed_dictionaries({"messages": st.lists(fuzz.message, max_size=3)})
file_contents = st.one_of(
    st.just(TRAIN),
    st.lists(ROW | fuzz.json_values, min_size=1, max_size=12).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
    ),
    st.binary(max_size=300),
    fuzz.texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
)
part_texts = fuzz.texts.map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=20)


@st.composite
def multipart(draw: st.DrawFn) -> tuple[str, bytes]:
    """(content-type, body): mostly a form with `file` and `purpose`, any of it malformed."""
    boundary = "b0undary"
    parts = []
    names = draw(st.lists(st.sampled_from(["file", "purpose", "x"]) | fuzz.texts, max_size=3))
    for name in draw(st.sampled_from([["file", "purpose"], ["purpose", "file"], names])):
        quoted = json.dumps(name).encode("utf-8", "surrogatepass")
        head = b"Content-Disposition: form-data; name=" + quoted
        if name == "file":
            filename = draw(st.just("train.jsonl") | fuzz.texts)
            head += b"; filename=" + json.dumps(filename).encode("utf-8", "surrogatepass")
            payload = draw(file_contents)
        else:
            payload = draw(st.just(b"fine-tune") | part_texts)
        parts.append(b"--" + boundary.encode() + b"\r\n" + head + b"\r\n\r\n" + payload + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    content_type = draw(
        st.sampled_from(
            [f"multipart/form-data; boundary={boundary}", "multipart/form-data",
             "application/json", f"multipart/mixed; boundary={boundary}"]
        )
    )  # fmt: skip
    return content_type, body


hyperparameters = st.fixed_dictionaries(
    {},
    optional={
        key: st.just("auto") | st.integers(-2, 2000) | st.floats(-1, 200) | fuzz.json_values
        for key in ("n_epochs", "batch_size", "learning_rate_multiplier")
    },
)
supervised = st.fixed_dictionaries({}, optional={"hyperparameters": hyperparameters})
job_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["tiny", "gpt-4o-mini"]) | fuzz.texts},
    optional={
        "training_file": st.sampled_from(["file-0123abcd"]) | fuzz.texts,
        "hyperparameters": hyperparameters | fuzz.json_values,
        "method": st.fixed_dictionaries(
            {"type": st.sampled_from(["supervised", "dpo", "x"])},
            optional={"supervised": supervised},
        ) | fuzz.json_values,
        # "ok" names a job once; sent again it is a 409
        "suffix": st.sampled_from(["ok", "Bad", "-x", "a" * 70]) | fuzz.texts | st.none(),
        "seed": st.integers(-2, 2**32) | st.none(),
        "validation_file": fuzz.texts | st.none(),
        "extra": fuzz.json_values,
    },
)  # fmt: skip


def _openai_error(response: httpx.Response) -> None:
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    assert response.status_code in (400, 404, 409, 413, 422), response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error


@settings(fuzz.FUZZ, max_examples=max(fuzz.EXAMPLES // 4, 1))
@given(form=multipart())
def test_generated_uploads_never_fail_the_runtime(
    runtime: RuntimeProcess, form: tuple[str, bytes]
) -> None:
    content_type, body = form
    response = httpx.post(
        f"{runtime.url}/v1/files", content=body, headers={"content-type": content_type}, timeout=30
    )
    if response.status_code == 200:
        event("uploaded")
        FileObject.model_validate(response.json(), strict=True)
    else:
        _openai_error(response)


# Requests that create a job (an uploaded file, the served model), some with one field off.
plausible_jobs = st.fixed_dictionaries(
    {"model": st.just("tiny"), "training_file": st.just("file-0123abcd")},
    optional={
        "hyperparameters": st.fixed_dictionaries(
            {}, optional={"n_epochs": st.integers(1, 3), "batch_size": st.integers(1, 4)}
        ),
        "seed": st.integers(0, 2**31 - 1),
        "suffix": st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
    },
).flatmap(lambda body: st.just(body) | job_bodies.map(lambda other: {**body, **other}))


@settings(fuzz.FUZZ, max_examples=max(fuzz.EXAMPLES // 4, 1))
@given(body=plausible_jobs | job_bodies, real_file=st.booleans())
def test_generated_job_requests_never_fail_the_runtime(
    runtime: RuntimeProcess, body: dict[str, Any], real_file: bool
) -> None:
    if real_file and "training_file" in body:
        with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
            body = {**body, "training_file": upload(sdk)}
    response = httpx.post(
        f"{runtime.url}/v1/fine_tuning/jobs",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    if response.status_code == 200:
        event("created")
        FineTuningJob.model_validate(response.json())
    else:
        _openai_error(response)
