"""Every schema of the table yields JSON that parses and validates on builtin://tiny's random
weights, at temperature 1, over several samples: the choices of one `n` request, each checked
strictly against the SDK's types and OpenAI's required fields."""

import json
from typing import Any

import httpx
import jsonschema
import pytest
from openai.types.chat import ChatCompletion

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


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_schema_yields_valid_json_at_temperature_1(runtime: InProcessRuntime, name: str) -> None:
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
    response = httpx.post(f"{runtime.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert_required_fields(payload, "chat.completion")
    ChatCompletion.model_validate(payload, strict=True)
    assert len(payload["choices"]) == SAMPLES
    finished = [check_choice(choice, schema) for choice in payload["choices"]]
    assert any(finished), f"no sample of {name} finished within {MAX_TOKENS} tokens"


def test_the_table_covers_at_least_30_schemas() -> None:
    assert len(SCHEMAS) >= 30
