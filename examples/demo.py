"""`make demo`: serve builtin://tiny and talk to it through the official openai client.

That model has random weights, so its words are nonsense; everything around them is real:
the MLX engine, continuous batching, the OpenAI protocol, streaming and metrics. Then a
real model answers: builtin://smollm2-135m-instruct, SmolLM2-135M-Instruct converted from
the GGUF file its Python package ships, and runs a declarative DSPy program on it.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from openai.types import CompletionUsage

PORT = int(os.environ.get("MODELKUBE_DEMO_PORT", "8000"))
URL = f"http://127.0.0.1:{PORT}"
REAL_MODEL = "builtin://smollm2-135m-instruct"
# A 135M model follows DSPy's field format once it has seen it in demos.
SENTIMENT = {
    "name": "sentiment",
    "signature": "text -> sentiment",
    "module": "predict",
    "instructions": "Classify the sentiment of the text as positive or negative.",
    "demos": [
        {"text": "I love this phone.", "sentiment": "positive"},
        {"text": "The battery died after an hour.", "sentiment": "negative"},
    ],
}


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def wait_ready(proc: subprocess.Popen[bytes], url: str = URL, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"demo: the runtime on {url} exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"demo: the runtime on {url} did not become ready")


def describe(usage: CompletionUsage | None) -> str:
    if usage is None:
        return "usage: none"
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details else 0
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    return f"usage: prompt={prompt} (cached {cached}) completion={completion}"


def serve(model: str, *extra: str) -> subprocess.Popen[bytes]:
    command = ["serve", "--model", model, "--port", str(PORT), *extra]
    say(f"starting: modelkube {' '.join(command)}")
    return subprocess.Popen([sys.executable, "-m", "modelkube_serving", *command])


def real_model() -> None:
    """A real instruct model answers through the same runtime and client, and a program."""
    programs = Path(tempfile.mkdtemp(prefix="modelkube-demo-")) / "programs.json"
    programs.write_text(json.dumps({"programs": [SENTIMENT]}))
    proc = serve(REAL_MODEL, "--programs-file", str(programs))
    try:
        wait_ready(proc, timeout=300)  # the first start converts the GGUF file once
        client = openai.OpenAI(base_url=f"{URL}/v1", api_key="not-needed")
        for question in ("What is the capital of France?", "Name three primary colors."):
            say(f"chat completion on {REAL_MODEL}: {question!r}")
            started = time.monotonic()
            reply = client.chat.completions.create(
                model=REAL_MODEL.removeprefix("builtin://"),
                messages=[{"role": "user", "content": question}],
                max_tokens=48,
                temperature=0,
            )
            seconds = time.monotonic() - started
            print(f"assistant: {reply.choices[0].message.content}")
            print(f"{describe(reply.usage)} in {seconds:.1f} s")
        text = "The concert was fantastic and the crowd loved it."
        say(f"DSPy program `sentiment` (predict, text -> sentiment) on {text!r}")
        started = time.monotonic()
        response = httpx.post(
            f"{URL}/v1/programs/sentiment", json={"inputs": {"text": text}}, timeout=300
        )
        seconds = time.monotonic() - started
        print(
            f"{response.status_code} outputs: {response.json().get('outputs')} in {seconds:.1f} s"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    proc = serve("builtin://tiny")
    try:
        wait_ready(proc)
        print(f"ready: {httpx.get(f'{URL}/readyz').json()}")
        client = openai.OpenAI(base_url=f"{URL}/v1", api_key="not-needed")
        say("GET /v1/models")
        print([m.id for m in client.models.list().data])

        say("chat completion (openai SDK)")
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "What does the operator do?"}],
            max_tokens=24,
        )
        print(f"assistant: {reply.choices[0].message.content!r}")
        print(f"finish_reason={reply.choices[0].finish_reason} {describe(reply.usage)}")

        say("streamed chat completion (openai SDK, stream_options.include_usage)")
        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Stream something."}],
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="|", flush=True)
            if chunk.usage:
                print(f"\n{describe(chunk.usage)}")

        say("GET /metrics (excerpt)")
        for line in httpx.get(f"{URL}/metrics").text.splitlines():
            if line.startswith(
                (
                    "modelkube_requests_total",
                    "modelkube_generation_tokens_total",
                    "modelkube_prompt_tokens_total",
                    "modelkube_blas_info",
                    "modelkube_time_to_first_token_seconds_count",
                    "modelkube_prefix_cache_hit_tokens_total",
                )
            ):
                print(line)
        say("SIGTERM: the runtime drains and exits")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    print(f"runtime exited with code {code}")
    real_model()


if __name__ == "__main__":
    main()
