"""Greedy completions llama.cpp's own `llama-server` gives builtin://smollm2-135m-instruct's
GGUF file: the fixture the llama.cpp engine must equal token for token.

data/smollm2_greedy_ids.json holds, per prompt, the prompt's token ids (our tokenizer's,
which test_token_parity checks against llama.cpp's) and the ids `llama-server` generated
from them at temperature 0. Regenerate it with the bench's llama-server (built once from the
llama-cpp-python sdist into ~/.cache/modelkube/bench):

    uv run python -m tests.serving.greedy_parity
"""

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

FIXTURE = Path(__file__).parent / "data" / "smollm2_greedy_ids.json"
LLAMA_CPP = "llama-cpp-python 0.3.36 (sdist), llama-server /completion, temperature 0"
MAX_TOKENS = 48

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about Kubernetes.",
    "Explain what a KV cache is in one sentence.",
    "List three prime numbers.",
    "How do you say 'thank you' in Japanese? Answer in Japanese script.",
    "def fib(n):",
]


def prompts(model_dir: Path) -> list[list[int]]:
    """The questions as chats rendered by the model's template, plus one raw text prompt."""
    from mlx_lm.tokenizer_utils import load

    tokenizer = load(model_dir)
    chats = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True
            )
        )
        for q in QUESTIONS[:-1]
    ]
    return [*chats, list(tokenizer.encode(QUESTIONS[-1]))]


def llama_server_case(url: str, prompt: list[int]) -> dict[str, Any]:
    """The prompt, the ids generated, and why it stopped; an end-of-generation token ends
    the ids but is not one of them (as in the runtime, where it is no text)."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "n_predict": MAX_TOKENS,
        "temperature": 0,
        "cache_prompt": False,
        "return_tokens": True,
    }
    reply = httpx.post(f"{url}/completion", json=body, timeout=120).json()
    tokens: list[int] = reply["tokens"]
    finish = "stop" if reply["stop_type"] == "eos" else "length"
    return {"prompt": prompt, "completion": tokens[:-1] if finish == "stop" else tokens,
            "finish": finish}  # fmt: skip


def regenerate() -> None:
    from bench.serving.llamacpp import ensure_llama_server, server_env
    from modelkube_serving.models.gguf import content_hash
    from modelkube_serving.models.packaged import packaged_gguf
    from modelkube_serving.models.uri import resolve_model

    gguf = packaged_gguf("smollm2-135m-instruct")
    binary = ensure_llama_server()
    port = 18431
    args = [str(binary), "-m", str(gguf), "--port", str(port), "-c", "4096", "--parallel", "1",
            "--threads", "1"]  # fmt: skip
    server = subprocess.Popen(args, env=server_env(binary), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        cases = [
            llama_server_case(url, p)
            for p in prompts(resolve_model("builtin://smollm2-135m-instruct"))
        ]
    finally:
        server.terminate()
        server.wait()
    head = {"reference": LLAMA_CPP, "max_tokens": MAX_TOKENS, "gguf_sha256": content_hash(gguf)}
    lines = ",\n".join(json.dumps(case) for case in cases)
    FIXTURE.write_text(json.dumps(head)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    print(f"wrote {len(cases)} cases to {FIXTURE}")


if __name__ == "__main__":
    regenerate()
