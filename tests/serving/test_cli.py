"""The command line fails with one readable line and a non-zero exit on bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelkube_serving.cli import main
from modelkube_serving.metrics import VLLM_KV_CACHE_USAGE
from modelkube_serving.models.builtin import ensure_builtin
from tests.serving.conftest import StartRuntime


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`modelkube ARGS` in this process: the exit code and stderr. The serve command's BLAS
    re-exec (which would replace pytest itself) is marked done."""
    monkeypatch.setenv("MODELKUBE_BLAS_REEXEC", "1")
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelkube_serving", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "builtin://huge"], "unknown built-in model builtin://huge"),
        (["--model", "/no/such/model"], "no model at /no/such/model"),
        (["--model", "s3://bucket/model"], "unsupported model URI scheme s3://"),
        (["--model", "hf://not-a-repo"], "not of the form hf://org/name"),
        (
            ["--model", "builtin://tiny", "--api-keys-file", "/no/such/keys"],
            "cannot read API keys file",
        ),
        ([], "give --model, or --upstream-provider for proxy mode"),
        (["--upstream-provider", "custom", "--upstream-model", "m"], "needs --upstream-base-url"),
        (["--upstream-provider", "groq"], "--upstream-provider needs --upstream-model"),
        (
            ["--model", "builtin://tiny", "--upstream-provider", "groq", "--upstream-model", "m"],
            "--model and --upstream-provider exclude each other",
        ),
        (
            ["--upstream-provider", "custom", "--upstream-model", "m", "--upstream-base-url", "x"],
            "must start with http:// or https://",
        ),
        (
            ["--upstream-provider", "groq", "--upstream-model", "m", "--upstream-ca-file", "/no"],
            "cannot read --upstream-ca-file /no",
        ),
        (
            [
                "--upstream-provider",
                "groq",
                "--upstream-model",
                "m",
                "--upstream-ca-file",
                "/etc/os-release",
            ],
            "--upstream-ca-file /etc/os-release holds no PEM certificate",
        ),
        (
            ["--upstream-provider", "openai", "--upstream-model", "m", "--adapter", "a=/x"],
            "adapters and the fine-tuning API need a local --model",
        ),
    ],
)
def test_bad_serve_arguments_fail_with_one_line(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stderr = run_main(monkeypatch, capsys, "serve", *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("modelkube serve: error: ")
    assert message in lines[-1]
    assert "Traceback" not in stderr


def test_llamacpp_refuses_a_hugging_face_directory_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the built-ins are written out as GGUF (in the model cache); any other HF-layout
    directory is refused, not written into."""
    model = tmp_path / "tiny"
    shutil.copytree(ensure_builtin("tiny"), model, ignore=shutil.ignore_patterns("*.gguf"))
    code, stderr = run_main(
        monkeypatch, capsys, "serve", "--model", str(model), "--engine", "llamacpp"
    )
    assert code == 2
    assert stderr.strip().splitlines()[-1] == (
        f"modelkube serve: error: the llama.cpp engine serves GGUF models; {model} is not one "
        "(use --engine mlx)"
    )
    assert list(model.glob("*.gguf")) == []


def test_the_real_command_exits_2_with_one_line() -> None:
    result = run_cli("serve", "--model", "builtin://huge")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("modelkube serve: error: unknown built-in model builtin://huge")
    assert "Traceback" not in result.stderr


def test_unreachable_hub_fails_fast_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stderr = run_main(monkeypatch, capsys, "serve", "--model", "hf://example-org/example")
    assert code == 2
    assert "cannot download hf://example-org/example" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr


def test_empty_keys_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# nothing but a comment\n\n")
    code, stderr = run_main(
        monkeypatch, capsys, "serve", "--model", "builtin://tiny", "--api-keys-file", str(keys)
    )
    assert code == 2
    assert "holds no keys" in stderr


def test_out_of_range_limits_are_refused_by_the_parser(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = run_main(
        monkeypatch, capsys, "serve", "--model", "builtin://tiny", "--max-concurrent-requests", "0"
    )
    assert code == 2
    assert "must be at least 1" in stderr


def test_weights_that_do_not_load_stop_the_server_with_one_line(tmp_path: Path) -> None:
    from modelkube_serving.models.builtin import ensure_builtin

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((ensure_builtin("tiny") / name).read_bytes())
    (tmp_path / "model.safetensors").write_text("not safetensors")
    result = run_cli("serve", "--model", str(tmp_path), "--port", "21999")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        f"modelkube serve: error: cannot load model {tmp_path.name}: "
        f"[load_safetensors] Invalid json header length file {tmp_path}/model.safetensors"
    ]


def test_context_length_flag_caps_the_context(start_runtime: StartRuntime) -> None:
    capped = start_runtime("--context-length", "64")
    response = httpx.post(
        f"{capped.url}/v1/completions",
        json={"model": "tiny", "prompt": "word " * 70, "max_tokens": 1},
    )
    assert response.status_code == 400
    assert "maximum context length is 64 tokens" in response.json()["error"]["message"]


def test_prefix_cache_flag_sets_the_budget_the_cache_fills(start_runtime: StartRuntime) -> None:
    # One short conversation's KV cache is about 76 KiB on the tiny model: under 0.01% of the
    # default 1 GiB, over 5% of 1 MiB.
    runtime = start_runtime("--prefix-cache-mb", "1")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    httpx.post(f"{runtime.url}/v1/chat/completions", json=body, timeout=60).raise_for_status()
    text = httpx.get(f"{runtime.url}/metrics").text
    (usage,) = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == VLLM_KV_CACHE_USAGE
    ]
    assert 0.05 < usage <= 1.0
