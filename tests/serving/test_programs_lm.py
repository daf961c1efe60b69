"""DSPy calls answered in-process by the runtime's own engine, through CompletionService."""

import asyncio
from collections.abc import AsyncIterator

import dspy
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletion

from modelkube_serving.engine.mlx_engine import EngineSettings, MLXEngine
from modelkube_serving.metrics import GENERATION_TOKENS, RuntimeMetrics
from modelkube_serving.models.uri import resolve_model
from modelkube_serving.programs.backend import local_backend
from modelkube_serving.programs.lm import runtime_lm
from modelkube_serving.programs.structured import adapter
from modelkube_serving.protocol import ChatCompletionRequest
from modelkube_serving.services.admission import Admission, AdmissionLimits
from modelkube_serving.services.completions import CompletionService
from tests.serving.conftest import MODEL

MAX_TOKENS = 8


@pytest_asyncio.fixture
async def service() -> AsyncIterator[CompletionService]:
    metrics = RuntimeMetrics()
    engine = MLXEngine(resolve_model("builtin://tiny"), MODEL, EngineSettings(4), metrics)
    loop = asyncio.get_running_loop()
    loaded: asyncio.Future[BaseException | None] = loop.create_future()

    def on_loaded(error: BaseException | None) -> None:
        loop.call_soon_threadsafe(loaded.set_result, error)

    engine.start(loop, on_loaded)
    assert await asyncio.wait_for(loaded, 120) is None
    admission = Admission(AdmissionLimits(max_running=4, max_queued=16), lambda _r, _q: None)
    yield CompletionService(engine, admission, metrics, MODEL)
    await asyncio.to_thread(engine.stop)


def generated(service: CompletionService) -> float:
    value = service.metrics.registry.get_sample_value(GENERATION_TOKENS, {"model": MODEL})
    return value or 0.0


async def greedy(service: CompletionService, text: str) -> str:
    body = ChatCompletionRequest.model_validate(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
        }
    )
    prepared = service.prepare_chat(body)
    raw = await service.collect(prepared, await service.admit(prepared, "test"))
    content = ChatCompletion.model_validate_json(raw).choices[0].message.content
    assert content is not None
    return content


@pytest.mark.asyncio
async def test_lm_calls_run_on_the_engine_async_and_from_threads(
    service: CompletionService,
) -> None:
    lm = runtime_lm(
        local_backend(service), asyncio.get_running_loop(), max_tokens=MAX_TOKENS, temperature=0.0
    )
    expected = await greedy(service, "Tell me about the operator.")
    before = generated(service)
    assert await lm.acall("Tell me about the operator.") == [expected]
    in_thread = await asyncio.to_thread(lm, "Tell me about the operator.")
    assert in_thread == [expected]
    assert generated(service) - before == 2 * MAX_TOKENS
    usage = lm.history[-1]["usage"]
    assert usage["completion_tokens"] == MAX_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + MAX_TOKENS


@pytest.mark.slow  # DSPy's prompts prefill on MLX's reference BLAS in this process (no preload)
@pytest.mark.asyncio
async def test_predict_on_random_weights_parses_with_the_json_adapter(
    service: CompletionService,
) -> None:
    """The JSON adapter sends the signature's schema; constrained, random weights answer in
    the signature's fields, in one call (no ChatAdapter attempt, no fallback)."""
    lm = runtime_lm(local_backend(service), asyncio.get_running_loop(), max_tokens=MAX_TOKENS)
    before = generated(service)
    with dspy.context(lm=lm, adapter=adapter()):
        result = await dspy.Predict("question -> answer: str, sure: bool").acall(
            question="What does the operator do?"
        )
    assert isinstance(result.answer, str) and isinstance(result.sure, bool)
    assert len(lm.history) == 1
    assert generated(service) - before == lm.history[-1]["usage"]["completion_tokens"]
