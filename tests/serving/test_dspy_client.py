"""Standard DSPy against the runtime from outside, the way a user's program calls a ModelService."""

import os
from collections.abc import Iterator

import pytest

# LiteLLM fetches its cost map from the internet at import unless told to use the bundled one.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
from dspy.utils.exceptions import AdapterParseError

from tests.serving.conftest import MODEL, scrape
from tests.serving.inprocess import InProcessRuntime

CHAT_OK = f"modelkube_requests_total{{endpoint=chat,model={MODEL},status=200}}"


@pytest.fixture
def lm(runtime: InProcessRuntime) -> Iterator[dspy.LM]:
    lm = dspy.LM(
        f"openai/{MODEL}",
        api_base=f"{runtime.url}/v1",
        api_key="unused",
        cache=False,
        max_tokens=16,
        temperature=0.0,
        num_retries=0,
    )
    with dspy.context(lm=lm):
        yield lm


def test_dspy_lm_round_trips_through_litellm(lm: dspy.LM, runtime: InProcessRuntime) -> None:
    before = scrape(runtime.url).get(CHAT_OK, 0)
    [text] = lm("Tell me about the operator.")
    assert isinstance(text, str) and text
    assert scrape(runtime.url)[CHAT_OK] - before == 1
    usage = lm.history[-1]["usage"]
    assert usage["completion_tokens"] == 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + 16


def test_predict_reaches_the_model_and_fails_in_dspys_own_parser(
    lm: dspy.LM, runtime: InProcessRuntime
) -> None:
    # builtin://tiny has random weights, so its text never has DSPy's field markers: the error
    # must be DSPy's parse error (ChatAdapter, then its JSONAdapter fallback), not a transport one.
    before = scrape(runtime.url).get(CHAT_OK, 0)
    with pytest.raises(AdapterParseError) as raised:
        dspy.Predict("question -> answer")(question="What does the operator do?")
    calls = scrape(runtime.url)[CHAT_OK] - before
    assert calls == 2, calls  # ChatAdapter, then the JSONAdapter fallback
    assert raised.value.lm_response
    assert lm.history[-1]["outputs"]
