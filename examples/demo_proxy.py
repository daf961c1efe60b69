"""`make demo`, part 4: proxy mode, one runtime serving another as a hosted provider.

A runtime on builtin://tiny plays the provider; a second runtime in proxy mode sits in front
of it with our API keys, metrics and a DSPy program, and the openai client talks to the proxy.
The provider only accepts the proxy's upstream key, so the clients' keys never reach it.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from examples.demo import say, wait_ready

PROVIDER_PORT = int(os.environ.get("MODELKUBE_DEMO_PROVIDER_PORT", "8010"))
PROXY_PORT = int(os.environ.get("MODELKUBE_DEMO_PROXY_PORT", "8011"))
PROVIDER = f"http://127.0.0.1:{PROVIDER_PORT}"
PROXY = f"http://127.0.0.1:{PROXY_PORT}"
CLIENT_KEY = "demo-client-key"
UPSTREAM_KEY = "demo-upstream-key"
PROGRAMS = {"programs": [{"name": "qa", "signature": "question -> answer", "module": "predict"}]}
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What does the operator do?"}
]
METRICS = (
    "modelkube_upstream_requests_total",
    "modelkube_upstream_retries_total",
    "modelkube_upstream_circuit_open",
    "modelkube_requests_total",
)


def serve(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    command = ["modelkube_serving", "serve", "--port", str(port), "--log-level", "warning", *args]
    return subprocess.Popen([sys.executable, "-m", *command], env=env)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def expect_error(path: str, body: Mapping[str, object], status: int, code: str) -> None:
    """POST with the client's key, and print the one line of the error the step is about."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    answer = httpx.post(f"{PROXY}{path}", json=body, headers=headers, timeout=60)
    error = answer.json().get("error") or {}
    if answer.status_code != status or error.get("code") != code:
        sys.exit(f"demo: expected {status} {code} from {path}, got {answer.status_code}")
    message = error["message"] if len(error["message"]) < 100 else error["message"][:97] + "..."
    print(f"HTTP {status} code={code}: {message}")


def start(work: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    (work / "provider-keys").write_text(f"{UPSTREAM_KEY}\n")
    (work / "proxy-keys").write_text(f"{CLIENT_KEY}\n")
    (work / "programs.json").write_text(json.dumps(PROGRAMS))
    say(f"the provider: modelkube serve --model builtin://tiny --port {PROVIDER_PORT}")
    provider = serve(PROVIDER_PORT, "--model", "builtin://tiny",
                     "--api-keys-file", str(work / "provider-keys"))  # fmt: skip
    say(f"the proxy: modelkube serve --upstream-provider custom --port {PROXY_PORT} ...")
    print(f"upstream {PROVIDER}/v1, model tiny, served as hosted-tiny; "
          f"client key {CLIENT_KEY!r}, upstream key {UPSTREAM_KEY!r}; program qa")  # fmt: skip
    proxy = serve(PROXY_PORT, "--upstream-provider", "custom", "--upstream-base-url",
                  f"{PROVIDER}/v1", "--upstream-model", "tiny", "--served-model-name",
                  "hosted-tiny", "--upstream-retries", "1", "--api-keys-file",
                  str(work / "proxy-keys"), "--programs-file", str(work / "programs.json"),
                  env={**os.environ, "MODELKUBE_UPSTREAM_API_KEY": UPSTREAM_KEY})  # fmt: skip
    return provider, proxy


def openai_calls() -> None:
    client = openai.OpenAI(base_url=f"{PROXY}/v1", api_key=CLIENT_KEY)
    say("GET /v1/models through the proxy (openai SDK)")
    print([m.id for m in client.models.list().data])
    say("chat completion through the proxy")
    reply = client.chat.completions.create(model="hosted-tiny", messages=MESSAGES, max_tokens=16)
    print(f"assistant: {reply.choices[0].message.content!r}")
    usage = reply.usage
    tokens = (
        f"prompt={usage.prompt_tokens} completion={usage.completion_tokens}" if usage else "none"
    )
    print(f"finish_reason={reply.choices[0].finish_reason} usage: {tokens}")
    say("streamed chat completion through the proxy: chunks as they arrive")
    stream = client.chat.completions.create(
        model="hosted-tiny", messages=MESSAGES, max_tokens=16, stream=True
    )
    chunks = 0
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="|", flush=True)
    print(f"\n{chunks} chunks")


def wrong_key() -> None:
    say("a wrong key: our keys guard the proxy")
    try:
        openai.OpenAI(base_url=f"{PROXY}/v1", api_key="wrong-key").models.list()
        sys.exit("demo: the proxy accepted a wrong key")
    except openai.AuthenticationError as exc:
        print(f"HTTP {exc.status_code} code={exc.code}: {exc.message.split(' - ', 1)[-1]}")


def program_call() -> None:
    say("POST /v1/programs/qa through the proxy (DSPy, run on the provider)")
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    cards = httpx.get(f"{PROXY}/v1/programs", headers=headers).json()["data"]
    print(f"GET /v1/programs: {[(card['id'], card['signature']) for card in cards]}")
    body = {"inputs": {"question": "What does the operator do?"}}
    answer = httpx.post(f"{PROXY}/v1/programs/qa", json=body, headers=headers, timeout=120)
    error = answer.json().get("error") or {}
    if answer.status_code == 200:
        print(f"outputs: {answer.json()['outputs']}")
        print(
            "the program's JSON schema went to the provider as response_format, and our"
            " runtime constrains its output to it: even random weights answer {'answer': ...}"
        )
    elif answer.status_code == 422 and error.get("code") == "unparsable_output":
        # A provider that ignores response_format, or an answer cut short by max_tokens.
        print(f"HTTP 422 code=unparsable_output: {error['message'][:97]}")
    else:
        sys.exit(f"demo: /v1/programs/qa answered {answer.status_code}: {answer.text[:200]}")


def metrics(only: tuple[str, ...] = METRICS) -> None:
    for line in httpx.get(f"{PROXY}/metrics").text.splitlines():
        ours = not line.startswith("modelkube_requests_total") or 'model="hosted-tiny"' in line
        if line.startswith(only) and ours:
            print(line)


def unreachable(provider: subprocess.Popen[bytes]) -> None:
    say("the provider stops; one more call through the proxy")
    print(f"provider exited with code {stop(provider)}")
    body = {"model": "hosted-tiny", "messages": [{"role": "user", "content": "Still there?"}]}
    expect_error("/v1/chat/completions", body, 502, "upstream_unreachable")
    print("after one retry (--upstream-retries 1):")
    metrics(("modelkube_upstream_requests_total", "modelkube_upstream_retries_total"))


def main() -> None:
    provider, proxy = start(Path(tempfile.mkdtemp(prefix="modelkube-demo-proxy-")))
    try:
        wait_ready(provider, PROVIDER, timeout=60)
        wait_ready(proxy, PROXY, timeout=60)
        openai_calls()
        wrong_key()
        program_call()
        say("GET /metrics on the proxy (excerpt)")
        metrics()
        unreachable(provider)
        say("SIGTERM: the proxy drains and exits")
    finally:
        stop(provider)
        code = stop(proxy)
    print(f"proxy exited with code {code}")


if __name__ == "__main__":
    main()
