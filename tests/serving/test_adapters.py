"""LoRA, DoRA and full adapters on one base model: chosen per request as `tiny:<adapter>`,
loaded and unloaded while the runtime serves, with mlx-lm's own output.

The runtime tests run on each engine. llama.cpp serves LoRA (converted to a GGUF LoRA); the
DoRA and full adapters given to it fail to load, with the reason in their state."""

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import mlx.core as mx
import mlx_lm
import openai
import pytest
from mlx.utils import tree_flatten
from openai.types.chat import ChatCompletionMessageParam

from modelkube_serving.engine.loading import load_model
from modelkube_serving.engine.variants import build_variant
from modelkube_serving.models import uri
from modelkube_serving.models.builtin import ensure_builtin
from tests.serving.adapter_files import write_adapter
from tests.serving.conftest import ENGINE_ARGS, MODEL, scrape
from tests.serving.inprocess import InProcessRuntime
from tests.serving.test_cli import run_main
from tests.waiting import wait_until

CHAT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Tell me about the operator."}
]
MAX_TOKENS = 24
KINDS = ("lora", "dora", "full")
# What each engine serves of KINDS.
SERVES = {"mlx": KINDS, "llamacpp": ("lora",)}


# -- fixtures: adapters written by mlx-lm's code, one runtime for the module ---------------
@pytest.fixture(scope="module")
def base() -> Path:
    return ensure_builtin("tiny")


@pytest.fixture(scope="module")
def adapters(base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    kinds = {"lora": "lora", "dora": "dora", "full": "full", "second": "lora"}
    return {
        name: write_adapter(base, root / name, kind, seed=i + 1)
        for i, (name, kind) in enumerate(kinds.items())
    }


@pytest.fixture(scope="module", params=list(ENGINE_ARGS))
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def pvc_root(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"pvc-{engine}")


@pytest.fixture(scope="module")
def configmap(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out as the kubelet mounts a ConfigMap; its file is absent at first."""
    return tmp_path_factory.mktemp(f"configmap-{engine}")


@pytest.fixture(scope="module")
def server(
    engine: str,
    adapters: dict[str, Path],
    pvc_root: Path,
    configmap: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InProcessRuntime]:
    flags = [f"--adapter={kind}={adapters[kind]}" for kind in KINDS]
    args = [
        "--model",
        "builtin://tiny",
        *ENGINE_ARGS[engine],
        *flags,
        "--adapters-file",
        str(configmap / "adapters.json"),
    ]
    log = tmp_path_factory.mktemp("adapter-runtime") / "runtime.log"
    with pytest.MonkeyPatch.context() as env:  # where pvc:// claims are mounted, as in a pod
        env.setattr(uri, "PVC_MOUNT_ROOT", pvc_root)
        runtime = InProcessRuntime(args, log).start()
        yield runtime
        runtime.stop()


@pytest.fixture
def client(server: InProcessRuntime) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def greedy(client: openai.OpenAI, model: str, max_tokens: int = MAX_TOKENS) -> str:
    reply = client.chat.completions.create(
        model=model, messages=CHAT, max_tokens=max_tokens, temperature=0
    )
    return reply.choices[0].message.content or ""


def mlx_lm_greedy(base: Path, adapter: Path | None) -> str:
    """The reference: mlx-lm in this process, no runtime at all. Its tokens are decoded as a
    whole, as the runtime does (mlx-lm's streaming detokenizer drops a leading space)."""
    model, tokenizer = mlx_lm.load(str(base), adapter_path=str(adapter) if adapter else None)
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)
    steps = mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=MAX_TOKENS)
    text: str = tokenizer.decode([r.token for r in steps if r.finish_reason != "stop"])
    return text


# llama.cpp keeps its KV cache in float16, MLX here in float32: where mlx-lm's top two logits
# are closer than this, llama.cpp may take the other (measured on tiny with a LoRA: a gap of
# 0.0015 flipped, one of 0.00024 did not).
NEAR_TIE = 0.005


def mlx_lm_sure_prefix(base: Path, adapter: Path) -> str:
    """mlx-lm's greedy text up to its first near-tie: what any engine computing the same model
    must say first."""
    model, tokenizer = mlx_lm.load(str(base), adapter_path=str(adapter))
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)
    tokens: list[int] = []
    for _ in range(MAX_TOKENS):
        logits = model(mx.array([prompt + tokens]))[0, -1]
        top = mx.sort(logits)[-2:]
        token = cast(int, mx.argmax(logits).item())
        if float(top[1] - top[0]) < NEAR_TIE or token in tokenizer.eos_token_ids:
            break
        tokens.append(token)
    text: str = tokenizer.decode(tokens)
    return text


def assert_mlx_lms_output(engine: str, text: str, base: Path, adapter: Path) -> None:
    if engine == "mlx":
        assert text == mlx_lm_greedy(base, adapter)
        return
    sure = mlx_lm_sure_prefix(base, adapter)
    assert len(sure) >= 20, sure  # enough for another adapter, or none, to say otherwise
    assert text.startswith(sure), (text, sure)


def write_configmap(directory: Path, adapters: list[dict[str, str]]) -> None:
    """Update the file as the kubelet does: a new data directory, then an atomic swap of the
    `..data` symlink, so the file's path never changes but its inode does."""
    version = directory / f"..{time.monotonic_ns()}"
    version.mkdir()
    (version / "adapters.json").write_text(json.dumps({"adapters": adapters}))
    (directory / "..data_tmp").symlink_to(version.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    link = directory / "adapters.json"
    if not link.is_symlink():
        link.symlink_to("..data/adapters.json")


def served(server: InProcessRuntime) -> list[str]:
    return [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]


def states(server: InProcessRuntime) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in httpx.get(f"{server.url}/v1/adapters").json()["data"]}


# -- serving ------------------------------------------------------------------------------
def served_models(engine: str) -> list[str]:
    return [MODEL, *sorted(f"tiny:{kind}" for kind in SERVES[engine])]


def test_models_lists_the_base_then_each_adapter_with_its_parent(
    client: openai.OpenAI, engine: str
) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == served_models(engine)
    assert [getattr(m, "parent", None) for m in models] == [None] + [MODEL] * len(SERVES[engine])


def test_the_lora_metric_names_the_adapters_running(server: InProcessRuntime) -> None:
    def info() -> str:
        return next(k for k in scrape(server.url) if k.startswith("vllm:lora_requests_info{"))

    body = {"model": "tiny:lora", "messages": CHAT, "max_tokens": 1500, "stream": True}
    url = f"{server.url}/v1/chat/completions"
    with (
        httpx.Client(timeout=60) as c,
        c.stream("POST", url, json={**body, "ignore_eos": True}) as r,
    ):
        lines = r.iter_lines()
        next(lines)
        assert "running_lora_adapters=lora," in info()
        assert "max_lora=" in info()
    wait_until(lambda: "running_lora_adapters=," in info(), 10, "no adapter running")


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_output_is_what_mlx_lm_loads_with_adapter_path(
    server: InProcessRuntime,
    client: openai.OpenAI,
    engine: str,
    base: Path,
    adapters: dict[str, Path],
    kind: str,
) -> None:
    if kind not in SERVES[engine]:  # a clear reason instead, for the operator's condition
        state = states(server)[kind]
        assert state["state"] == "failed"
        assert f"fine_tune_type '{kind}' is not served on the llama.cpp engine" in state["error"]
        return
    text = greedy(client, f"tiny:{kind}")
    assert_mlx_lms_output(engine, text, base, adapters[kind])
    assert text != greedy(client, MODEL)


@pytest.mark.parametrize("name", ["tiny:nope", "other:lora", "tiny:", "lora", "tiny:lora:x"])
def test_unknown_model_or_adapter_is_model_not_found(client: openai.OpenAI, name: str) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model=name, messages=CHAT, max_tokens=2)
    assert error.value.code == "model_not_found"
    assert f"`{name}`" in error.value.message


@pytest.mark.asyncio
async def test_base_and_adapters_decode_side_by_side_with_their_own_output(
    server: InProcessRuntime, client: openai.OpenAI, engine: str
) -> None:
    names = served_models(engine)
    alone = {name: greedy(client, name) for name in names}
    before = scrape(server.url)
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as sdk:

        async def stream(name: str) -> tuple[str, str]:
            chunks = await sdk.chat.completions.create(
                model=name, messages=CHAT, max_tokens=MAX_TOKENS, temperature=0, stream=True
            )
            text, model = "", ""
            async for chunk in chunks:
                model = chunk.model
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            return model, text

        together = await asyncio.gather(*(stream(name) for name in names * 2))
    assert together == [(name, alone[name]) for name in names * 2]
    after = scrape(server.url)
    for name in names:  # metrics keep the requested name as the `model` label
        key = f"modelkube_requests_total{{endpoint=chat,model={name},status=200}}"
        assert after[key] - before.get(key, 0) == 2


# -- the watched file ------------------------------------------------------------------------
def test_adapter_in_the_watched_file_loads_reloads_and_unloads_while_the_base_streams(
    server: InProcessRuntime,
    client: openai.OpenAI,
    engine: str,
    base: Path,
    adapters: dict[str, Path],
    configmap: Path,
    pvc_root: Path,
) -> None:
    base_streams = BaseStreams(client)
    base_streams.start()
    # Reloaded as another adapter the engine serves.
    other = "dora" if "dora" in SERVES[engine] else "lora"
    try:
        watched_file_lifecycle(server, client, engine, base, adapters, configmap, pvc_root, other)
    finally:
        results = base_streams.stop()  # before the client closes, even on failure
    assert len(results) >= 2
    assert {finish for _, finish in results} == {"length"}
    assert len({text for text, _ in results}) == 1  # the same greedy text all along


def watched_file_lifecycle(
    server: InProcessRuntime,
    client: openai.OpenAI,
    engine: str,
    base: Path,
    adapters: dict[str, Path],
    configmap: Path,
    pvc_root: Path,
    other: str,
) -> None:
    # The fine-tune is still writing: the config is there, the weights are not yet.
    run = pvc_root / "claim" / "run-1"
    run.mkdir(parents=True)
    shutil.copy(adapters["second"] / "adapter_config.json", run)
    write_configmap(configmap, [{"name": "tuned", "uri": "pvc://claim/run-1"}])
    wait_until(lambda: states(server).get("tuned", {}).get("state") == "pending", 10, "pending")
    shutil.copy(adapters["second"] / "adapters.safetensors", run)
    wait_until(lambda: "tiny:tuned" in served(server), 10, "tiny:tuned listed")
    assert_mlx_lms_output(engine, greedy(client, "tiny:tuned"), base, adapters["second"])
    # A new uri for the same name reloads it.
    write_configmap(configmap, [{"name": "tuned", "uri": str(adapters[other])}])
    expected = greedy(client, f"tiny:{other}")
    wait_until(lambda: greedy(client, "tiny:tuned") == expected, 10, "tiny:tuned reloaded")
    # Unloaded while a request runs on it: new requests get 404, the running one finishes.
    running = client.chat.completions.create(
        model="tiny:tuned",
        messages=CHAT,
        max_tokens=120,
        stream=True,
        extra_body={"ignore_eos": True},
        stream_options={"include_usage": True},
    )
    chunks = [next(running)]
    write_configmap(configmap, [])
    wait_until(lambda: "tiny:tuned" not in served(server), 10, "tiny:tuned unlisted")
    with pytest.raises(openai.NotFoundError):
        greedy(client, "tiny:tuned")
    chunks.extend(running)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 120
    # Its generator is released on the engine loop's next turn, after the last chunk went out.
    wait_until(lambda: "adapter tuned: unloaded" in server.log(), 10, "tuned released")


class BaseStreams(threading.Thread):
    """Streams from the base model one after another until stopped, so that one is always
    in flight while adapters load and unload."""

    def __init__(self, client: openai.OpenAI) -> None:
        super().__init__()
        self.client = client
        self.results: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            chunks = self.client.chat.completions.create(
                model=MODEL, messages=CHAT, max_tokens=64, temperature=0, stream=True
            )
            text, finish = "", None
            for chunk in chunks:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            self.results.append((text, finish))

    def stop(self) -> list[tuple[str, str | None]]:
        self.stopping.set()
        self.join(60)
        return self.results


# What each engine says of an adapter whose config and tensors disagree on the rank.
SHAPE_ERRORS = {
    "mlx": ("incompatible tensors", "does not match model parameter shape"),
    "llamacpp": ("is not of rank 8, as adapter_config.json says",),
}


def test_bad_adapters_are_reported_and_everything_else_keeps_serving(
    server: InProcessRuntime,
    client: openai.OpenAI,
    engine: str,
    base: Path,
    adapters: dict[str, Path],
    tmp_path: Path,
    configmap: Path,
) -> None:
    shapes = write_adapter(base, tmp_path / "shapes", "lora", seed=9, rank=4)
    config = json.loads((shapes / "adapter_config.json").read_text())
    config["lora_parameters"]["rank"] = 8  # says 8, holds rank-4 tensors
    (shapes / "adapter_config.json").write_text(json.dumps(config))
    garbage = tmp_path / "garbage"
    shutil.copytree(adapters["lora"], garbage)
    (garbage / "adapters.safetensors").write_text("not safetensors")
    kind = tmp_path / "kind"
    shutil.copytree(adapters["lora"], kind)
    (kind / "adapter_config.json").write_text(json.dumps({**config, "fine_tune_type": "qlora"}))
    bad = {"shapes": shapes, "garbage": garbage, "kind": kind}
    write_configmap(configmap, [{"name": n, "uri": str(p)} for n, p in bad.items()])

    def failed() -> dict[str, str] | None:
        now = states(server)
        if all(now.get(n, {}).get("state") == "failed" for n in bad):
            return {n: now[n]["error"] for n in bad}
        return None

    errors = wait_until(failed, 10, "three failed adapters")
    assert all(message in errors["shapes"] for message in SHAPE_ERRORS[engine])
    assert "safetensors" in errors["garbage"]
    assert "fine_tune_type 'qlora'" in errors["kind"]
    assert served(server) == served_models(engine)
    assert_mlx_lms_output(engine, greedy(client, "tiny:lora"), base, adapters["lora"])
    assert greedy(client, MODEL)
    log_lines = [line for line in server.log().splitlines() if "adapter shapes" in line]
    assert len(log_lines) == 1 and "cannot load" in log_lines[0]
    # Fixed files are tried again without touching the adapters file.
    config["lora_parameters"]["rank"] = 4
    (shapes / "adapter_config.json").write_text(json.dumps(config))
    wait_until(lambda: "tiny:shapes" in served(server), 10, "the fixed adapter served")
    write_configmap(configmap, [])
    wait_until(lambda: "tiny:shapes" not in served(server), 10, "the file's adapters gone")


# -- memory and the command line -----------------------------------------------------------
def test_a_variant_shares_the_base_model_weights(base: Path, adapters: dict[str, Path]) -> None:
    model, _ = load_model(base)
    base_bytes = sum(v.nbytes for v in dict(tree_flatten(model.parameters())).values())
    before = mx.get_active_memory()
    variants = [build_variant(model, base, adapters["lora"]) for _ in range(3)]
    grown = mx.get_active_memory() - before
    adapter_bytes = (adapters["lora"] / "adapters.safetensors").stat().st_size
    assert len(variants) == 3
    assert grown < 3 * adapter_bytes + (256 << 10) < base_bytes / 4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--adapter", "Bad_Name=/x"], "'Bad_Name' is not a DNS label"),
        (["--adapter", "noequals"], "expected NAME=URI, got 'noequals'"),
        (["--adapter", "bad=name"], "no adapter at name"),
    ],
)
def test_bad_adapter_flags_fail_with_one_line(
    flags: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stderr = run_main(monkeypatch, capsys, "serve", "--model", "builtin://tiny", *flags)
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("modelkube serve: error: ")
    assert message in last
    assert "Traceback" not in stderr
