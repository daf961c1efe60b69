"""A real fine-tune of builtin://tiny: losses fall, the adapter is mlx-lm's, runs resume."""

import json
import re
from pathlib import Path

import pytest
from mlx_lm import generate, load

from modelkube_serving.finetune.dataset import data_hash
from modelkube_serving.models.builtin import ensure_builtin
from tests.finetune.conftest import CHAT, QUICK, finetune, interrupt_after_checkpoint

PROMPT = [{"role": "user", "content": "Say the color red."}]


def greedy(adapter: Path | None) -> str:
    model, tokenizer = load(str(ensure_builtin("tiny")), adapter_path=adapter and str(adapter))
    prompt = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True)
    text: str = generate(model, tokenizer, prompt, max_tokens=12)
    return text


def validation_losses(log: str) -> list[float]:
    seen = [float(m) for m in re.findall(r"validation loss ([0-9.]+)", log)]
    return [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]


def test_validation_loss_falls_and_progress_is_shown(trained: tuple[Path, str]) -> None:
    _, log = trained
    losses = validation_losses(log)
    assert len(losses) >= 3, log
    assert losses[-1] < losses[0] - 0.3, losses
    assert "iteration 30/30" in log
    assert re.search(r"iteration 10/30, train loss [0-9.]+, .* it/s, ETA \d+s", log), log


def test_the_adapter_is_mlx_lms_and_changes_the_output(trained: tuple[Path, str]) -> None:
    output, _ = trained
    assert sorted(p.name for p in output.iterdir()) == [
        "adapter_config.json",
        "adapters.safetensors",
        "manifest.json",
    ]
    assert greedy(output) != greedy(None)


def test_the_manifest_says_what_made_the_adapter(trained: tuple[Path, str]) -> None:
    output, _ = trained
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["baseModel"] == "builtin://tiny"
    assert manifest["method"] == "lora"
    assert manifest["hyperparameters"]["iterations"] == 30
    assert manifest["hyperparameters"]["numLayers"] == 4  # the default, capped to the model
    assert manifest["dataHash"] == data_hash(CHAT.read_bytes(), b"")
    assert set(manifest["finalLosses"]) == {"train", "validation"}


def test_a_finished_run_is_not_redone_and_its_output_not_reused(trained: tuple[Path, str]) -> None:
    output, _ = trained
    args = ["--base", "builtin://tiny", "--data", str(CHAT), "--output", str(output)]
    again = finetune(*args, *QUICK)
    assert again.returncode == 0, again.stderr
    assert "already holds this run's adapter" in again.stdout
    other = finetune(*args, *QUICK, "--rank", "4")
    assert other.returncode == 2
    assert "already holds a finished adapter of another run" in other.stderr


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    output = tmp_path / "resumed"
    args = ["--base", "builtin://tiny", "--data", str(CHAT), "--output", str(output)]
    args += [*QUICK, "--save-every", "5"]
    stopped = interrupt_after_checkpoint(args, output)
    assert stopped.returncode == 143, stopped.stderr
    assert "rerun the same command to resume" in stopped.stderr
    state = json.loads((output / "checkpoint" / "state.json").read_text())
    assert state["iteration"] >= 5
    assert not (output / "manifest.json").exists()

    resumed = finetune(*args)
    assert resumed.returncode == 0, resumed.stderr
    match = re.search(r"resuming at iteration (\d+)", resumed.stderr)
    assert match is not None and int(match.group(1)) >= state["iteration"]
    assert (output / "manifest.json").exists()
    assert not (output / "checkpoint").exists()


@pytest.mark.parametrize("method", ["dora", "full"])
def test_dora_and_full_adapters_load_with_mlx_lm(method: str, tmp_path: Path) -> None:
    output = tmp_path / method
    args = ["--base", "builtin://tiny", "--data", str(CHAT), "--output", str(output)]
    result = finetune(*args, "--method", method, "--iterations", "5", "--learning-rate", "1e-3")
    assert result.returncode == 0, result.stderr
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == method
    greedy(output)  # loads through mlx_lm.load(..., adapter_path=...) unchanged
