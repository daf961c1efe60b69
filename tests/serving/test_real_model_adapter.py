"""A LoRA adapter that `modelkube finetune` trained on the real model answers its task on each
engine: the issue-14 tag task ("Tag: <word>" answered "[[<word>]]", tests/finetune/tag_task.py),
scored on the held-out prompts for the base and for the adapter.

On llama.cpp the adapter is the GGUF LoRA converted from mlx-lm's files, applied to the Q4_1
GGUF the base is served from; on MLX it is mlx-lm's adapter on the dequantized weights.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import openai
import pytest

from modelkube_serving.models.builtin import cache_root
from tests.finetune import tag_task
from tests.serving.conftest import ENGINE_ARGS, StartProcess

# Training, on a first run, took 88 s at load average 8 on two cores (the tag task's recipe).
pytestmark = [pytest.mark.real_model, pytest.mark.slow, pytest.mark.timeout(1800)]

BASE = "builtin://smollm2-135m-instruct"
FLAGS = {
    "iterations": "--iterations",
    "learningRate": "--learning-rate",
    "numLayers": "--num-layers",
    "rank": "--rank",
}


@pytest.fixture(scope="module")
def tag_adapter() -> Path:
    """Trained once (88 s, as above) and kept in the model cache, keyed by the training data and
    the hyperparameters, so later runs serve the same adapter."""
    recipe = json.dumps([BASE, tag_task.TRAIN.read_text(), tag_task.HYPERPARAMETERS])
    out = cache_root() / "test-adapters" / f"tag-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    if (out / "adapters.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        data = Path(work) / "train.jsonl"
        shutil.copy(tag_task.TRAIN, data)
        hyper = [f"{FLAGS[k]}={v}" for k, v in tag_task.HYPERPARAMETERS.items()]
        command = [sys.executable, "-m", "modelkube_serving", "finetune", "--base", BASE]
        command += ["--data", str(data), "--output", f"{work}/adapter", "--progress", "none"]
        subprocess.run([*command, *hyper], check=True, timeout=1200)
        Path(work, "adapter").rename(out)
    return out


@pytest.mark.parametrize("engine", list(ENGINE_ARGS))
def test_the_tag_adapter_answers_held_out_prompts_on_each_engine(
    engine: str, tag_adapter: Path, start_process: StartProcess
) -> None:
    # A process of its own: MLX needs the OpenBLAS preload the CLI does to run the real model
    # at speed (in this process it would use MLX's own reference BLAS).
    runtime = start_process(
        *("--model", BASE, *ENGINE_ARGS[engine], "--served-model-name", "tagger"),
        f"--adapter=tag={tag_adapter}",
    )
    prompts, expected = zip(*tag_task.held_out(), strict=True)
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0) as client:
        base = tag_task.exact_match(tag_task.answers(client, "tagger", list(prompts)), [*expected])
        tuned = tag_task.answers(client, "tagger:tag", list(prompts))
    accuracy = tag_task.exact_match(tuned, list(expected))
    print(f"{engine}: held-out exact match: base {base:.0%}, adapter {accuracy:.0%}")
    assert base <= 0.1
    assert accuracy >= 0.8, list(zip(tuned, expected, strict=True))
