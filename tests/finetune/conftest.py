import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CHAT = DATA / "chat.jsonl"
# Enough to move the tiny model's losses, little enough for a 2-core CI machine.
QUICK = ["--iterations", "30", "--learning-rate", "3e-4", "--steps-per-eval", "10"]


def finetune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelkube_serving", "finetune", "--progress", "lines", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def interrupt_after_checkpoint(args: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    """Start a run, SIGTERM it once its first checkpoint is on disk, and wait for it to exit."""
    command = [sys.executable, "-m", "modelkube_serving", "finetune", "--progress", "lines"]
    proc = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (output / "checkpoint" / "state.json").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real LoRA fine-tune of builtin://tiny on the chat data: its output dir and its log."""
    output = tmp_path_factory.mktemp("adapter") / "lora"
    result = finetune(
        "--base", "builtin://tiny", "--data", str(CHAT), "--output", str(output), *QUICK
    )
    assert result.returncode == 0, result.stderr
    return output, result.stderr
