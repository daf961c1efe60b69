"""A FineTuneJob teaches the real model a task it cannot do, and the handoff serves it.

builtin://smollm2-135m-instruct answers none of the held-out "Tag: <word>" prompts with
"[[<word>]]". A LoRA FineTuneJob on 160 such rows (tests/finetune/tag_task.py) trains in the
job's own trainer process (pods cannot run on kwok's nodes; see test_handoff_e2e), the
ModelService's runtime loads the adapter while it serves, and the adapter answers the held-out
prompts, whose words no training row has. The base model, served by the same runtime, answers
exactly as it did before the adapter was loaded.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import yaml

from tests.controlplane.cluster import ControlPlane
from tests.finetune import tag_task
from tests.operator.harness import (
    OperatorProcess,
    finish_training_pod,
    get_json,
    wait_until,
)
from tests.operator.test_finetunejob_e2e import storage
from tests.operator.test_handoff_e2e import (
    adapters_ready,
    model_ids,
    run_training_pod,
    service_account_dir,
)
from tests.serving.runtime_process import RuntimeProcess

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

BASE = "builtin://smollm2-135m-instruct"
SERVICE = {
    "apiVersion": "modelkube.io/v1alpha1",
    "kind": "ModelService",
    "metadata": {"name": "tagger"},
    "spec": {
        "model": {"uri": BASE},
        "adapters": [{"name": "tag", "fineTuneJobRef": {"name": "tag"}}],
    },
}
JOB = {
    "apiVersion": "modelkube.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "tag"},
    "spec": {
        "baseModel": {"uri": BASE},
        "dataset": {"configMapRef": {"name": "data", "key": "train.jsonl"}},
        "hyperparameters": tag_task.HYPERPARAMETERS,
        "output": {"uri": "pvc://adapters/tag"},
    },
}


@pytest.mark.timeout(1200)  # training alone took ~5 min at load average 15 on two cores
def test_a_fine_tune_of_the_real_model_learns_its_task_and_leaves_the_base_as_it_was(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    hostpath = tmp_path / "volume"
    docs = storage(namespace, str(hostpath))
    docs[0]["data"]["train.jsonl"] = tag_task.TRAIN.read_text()
    applied = cp.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all([*docs, JOB, SERVICE]),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr

    adapters_file = tmp_path / "adapters.json"
    pvc_root = tmp_path / "mnt"
    pvc_root.mkdir()
    (pvc_root / "adapters").symlink_to(hostpath, target_is_directory=True)
    runtime = RuntimeProcess(
        [
            *("--model", BASE, "--served-model-name", "tagger"),
            *("--adapters-file", str(adapters_file)),
        ],
        tmp_path / "runtime.log",
        env={"MODELKUBE_PVC_ROOT": str(pvc_root)},
    )
    job = wait_until(lambda: get_json(cp, "job", "tag", "-n", namespace), 30, "the Job")
    sa_dir = service_account_dir(cp, namespace, "tag-trainer", tmp_path / "sa")
    data_dir = tmp_path / "dataset"
    data_dir.mkdir()
    (data_dir / "train.jsonl").write_text(tag_task.TRAIN.read_text())
    hostpath.mkdir(parents=True, exist_ok=True)
    paths = {"/mnt/models/adapters": str(hostpath), "/etc/modelkube/dataset": str(data_dir)}
    prompts, expected = zip(*tag_task.held_out(), strict=True)
    # The runtime starts and answers for the base while the trainer runs: the adapter is
    # served only once the test writes the adapters file, after training.
    try:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            training = pool.submit(run_training_pod, cp, job, sa_dir, paths, 900)
            runtime.start(timeout=300)
            client = openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0)
            base_before = tag_task.answers(client, "tagger", list(prompts))
            trained = training.result()
            training_seconds = time.monotonic() - started
        base_accuracy = tag_task.exact_match(base_before, list(expected))
        assert base_accuracy < 0.2, base_before
        assert trained.returncode == 0, trained.stderr
        finish_training_pod(cp, namespace, "tag", 0)

        ms = adapters_ready(cp, "tagger", namespace, operator, "status", "True", 60)
        assert ms["status"]["servedModels"] == ["tagger", "tagger:tag"]
        configmap = get_json(cp, "configmap", "tagger-runtime", "-n", namespace) or {}
        adapters_file.write_text(configmap["data"]["adapters.json"])  # the kubelet's refresh
        wait_until(lambda: "tagger:tag" in model_ids(runtime), 120, f"loaded\n{runtime.log()}")

        tuned = tag_task.answers(client, "tagger:tag", list(prompts))
        tuned_accuracy = tag_task.exact_match(tuned, list(expected))
        print(
            f"held-out exact match: base {base_accuracy:.0%}, adapter {tuned_accuracy:.0%}; "
            f"trainer ran {training_seconds:.0f} s"
        )
        assert tuned_accuracy > 0.8, list(zip(expected, tuned, strict=True))
        assert tag_task.answers(client, "tagger", list(prompts)) == base_before
    finally:
        runtime.stop()
