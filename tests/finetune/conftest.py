import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelkube_serving.cli import main

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


@dataclass
class Outcome:
    returncode: int
    stderr: str


@pytest.fixture
def finetune_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Outcome]:
    """`modelkube finetune` in this process, for runs refused before training: the CLI's own
    exit code and stderr, without a process start (two, with the OpenBLAS re-exec) per case."""
    monkeypatch.setenv("MODELKUBE_BLAS", "reference")  # nothing is trained: no re-exec

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        on_sigterm = signal.getsignal(signal.SIGTERM)  # the command sets its own
        try:
            code = main(["finetune", "--progress", "lines", *args])
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            signal.signal(signal.SIGTERM, on_sigterm)
        return Outcome(code, capsys.readouterr().err)

    return run


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
