from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.inprocess import InProcessRuntime
from tests.serving.runtime_process import RuntimeProcess

MODEL = "tiny"
API_KEY = "sk-test-0123456789"

StartRuntime = Callable[..., InProcessRuntime]
StartProcess = Callable[..., RuntimeProcess]


R = TypeVar("R", InProcessRuntime, RuntimeProcess)


def _tiny_runtimes(make: Callable[[list[str], Path], R], logs: Path) -> Iterator[Callable[..., R]]:
    """Starts runtimes on builtin://tiny with extra `modelkube serve` flags; stops them all."""
    started: list[R] = []

    def start(*extra: str, wait_ready: bool = True) -> R:
        runtime = make(["--model", "builtin://tiny", *extra], logs / f"runtime-{len(started)}.log")
        started.append(runtime)
        return runtime.start(wait_ready=wait_ready)

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture(scope="session")
def start_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRuntime]:
    """A runtime in this process."""
    yield from _tiny_runtimes(InProcessRuntime, tmp_path_factory.mktemp("runtime-logs"))


@pytest.fixture(scope="session")
def start_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartProcess]:
    """A `modelkube serve` process of its own, for what needs one: signals, the BLAS preload."""
    yield from _tiny_runtimes(RuntimeProcess, tmp_path_factory.mktemp("process-logs"))


@pytest.fixture(scope="session")
def runtime(start_runtime: StartRuntime) -> InProcessRuntime:
    return start_runtime()


# builtin://tiny on each engine (llama.cpp serves the GGUF file it is written out as), so a
# test runs on either engine as it is.
ENGINE_ARGS: dict[str, tuple[str, ...]] = {
    "mlx": (),
    "llamacpp": (
        "--engine",
        "llamacpp",
        # One thread: ggml's spinning thread pool crawls when the cores are shared with
        # other work, as on a loaded test machine.
        "--engine-threads",
        "1",
    ),
}


@pytest.fixture(scope="session")
def llamacpp_runtime(start_runtime: StartRuntime) -> InProcessRuntime:
    return start_runtime(*ENGINE_ARGS["llamacpp"])


@pytest.fixture(params=list(ENGINE_ARGS))
def engine_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """`modelkube serve` flags for each engine, for tests that start their own runtime."""
    return ENGINE_ARGS[request.param]


def runtime_of(request: pytest.FixtureRequest) -> InProcessRuntime:
    """The shared runtime of the engine `request.param` names: a module that runs on both
    engines overrides `runtime` with a fixture parametrized by ENGINE_ARGS returning this."""
    name = "runtime" if request.param == "mlx" else "llamacpp_runtime"
    started: InProcessRuntime = request.getfixturevalue(name)
    return started


@pytest.fixture(params=list(ENGINE_ARGS))
def any_runtime(request: pytest.FixtureRequest) -> InProcessRuntime:
    """The shared runtime of each engine in turn."""
    return runtime_of(request)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys"
    path.write_text(f"# test keys\n{API_KEY}\nsk-second-key\n")
    return path


@pytest.fixture(scope="session")
def auth_runtime(start_runtime: StartRuntime, keys_file: Path) -> InProcessRuntime:
    return start_runtime("--api-keys-file", str(keys_file))


def _real_model_process(
    tmp_path_factory: pytest.TempPathFactory, *args: str
) -> Iterator[RuntimeProcess]:
    log = tmp_path_factory.mktemp("real-model") / "runtime.log"
    proc = RuntimeProcess(["--model", "builtin://smollm2-135m-instruct", *args], log)
    # A cold cache converts the GGUF file first (about 10 s here).
    proc.start(timeout=300)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def real_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """One `modelkube serve` process of builtin://smollm2-135m-instruct, shared by the
    real-model modules (its start costs tens of seconds)."""
    yield from _real_model_process(tmp_path_factory)


@pytest.fixture(scope="session")
def real_llamacpp_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """The same on llama.cpp, shared the same way (started 11-27 s per module before)."""
    yield from _real_model_process(tmp_path_factory, "--engine", "llamacpp")


@pytest.fixture(scope="module", params=["mlx", "llamacpp"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine serves the same GGUF file: MLX converted, llama.cpp as it is."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def engine_runtime(request: pytest.FixtureRequest, engine: str) -> RuntimeProcess:
    """builtin://smollm2-135m-instruct on each engine: the session's runtime of that engine."""
    name = {"mlx": "real_runtime", "llamacpp": "real_llamacpp_runtime"}[engine]
    runtime: RuntimeProcess = request.getfixturevalue(name)
    return runtime


@pytest.fixture
def client(runtime: InProcessRuntime) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest_asyncio.fixture
async def async_client(runtime: InProcessRuntime) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{runtime.url}/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


def scrape(url: str) -> dict[str, float]:
    """Every sample of /metrics as 'name{label=value,...}' -> value."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples
