"""Every schema of the table yields JSON that parses and validates at temperature 1, over
several samples, on both engines: builtin://tiny's random weights on MLX (the choices of one `n`
request), the real SmolLM2 GGUF on llama.cpp (seeded requests, until one finishes: llama.cpp
serves no `n` yet). Each response is checked strictly against the SDK's types and OpenAI's
required fields."""

import json
from typing import Any

import httpx
import jsonschema
import pytest
from openai.types.chat import ChatCompletion

from modelkube_serving.state import RuntimeState
from tests.openai_wire import assert_required_fields
from tests.serving.conftest import MODEL
from tests.serving.inprocess import InProcessRuntime
from tests.serving.schema_table import SCHEMAS

SAMPLES = 3
MAX_TOKENS = 300
CHECKER = jsonschema.FormatChecker()


def check_choice(choice: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Valid JSON for `schema`; False when max_tokens cut it (finish_reason says so)."""
    if choice["finish_reason"] == "length":
        return False
    assert choice["finish_reason"] == "stop", choice
    value = json.loads(choice["message"]["content"])
    jsonschema.validate(value, schema, format_checker=CHECKER)
    return True


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return {"type": "json_schema", "json_schema": {"name": safe, "schema": schema, "strict": True}}


def _sample(runtime: InProcessRuntime, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{runtime.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert_required_fields(payload, "chat.completion")
    ChatCompletion.model_validate(payload, strict=True)
    assert len(payload["choices"]) == body["n"]
    choices: list[dict[str, Any]] = payload["choices"]
    return choices


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_schema_yields_valid_json_at_temperature_1(
    any_runtime: InProcessRuntime, name: str
) -> None:
    schema = SCHEMAS[name]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Answer as JSON: {name}"}],
        "response_format": response_format(name, schema),
        "temperature": 1.0,
        "seed": len(name),
        "n": SAMPLES,
        "max_tokens": MAX_TOKENS,
    }
    assert isinstance(any_runtime.state, RuntimeState)
    if "n" in any_runtime.state.engine.features:
        finished = [check_choice(c, schema) for c in _sample(any_runtime, body)]
    else:
        finished = []
        for i in range(SAMPLES):
            [choice] = _sample(any_runtime, {**body, "n": 1, "seed": len(name) + i})
            finished.append(check_choice(choice, schema))
            if finished[-1]:
                break
    assert any(finished), f"no sample of {name} finished within {MAX_TOKENS} tokens"


def test_the_table_covers_at_least_30_schemas() -> None:
    assert len(SCHEMAS) >= 30
