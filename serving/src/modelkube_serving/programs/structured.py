"""DSPy programs on structured output: the JSON adapter, with the signature's schema sent as
`response_format`, so that constrained decoding makes every answer parse, on any model.

DSPy's `JSONAdapter` builds the schema of the signature's output fields and asks the LM for it
when the LM says it supports response schemas; the engines here say so. Before the schema goes
to the runtime, its open-ended parts are bounded (`bounded_schema`): a string without a length
or an array without a size would let a model that never closes them (random weights do not)
run into max_tokens, and a cut answer does not parse. Strings also leave out backslash escapes
and control characters, so that each character costs at most one token per UTF-8 byte.
"""

import copy
from typing import Any

import dspy
import pydantic

# Per string field: room for a short paragraph of reasoning or an answer.
MAX_STRING_CHARS = 320
MAX_ARRAY_ITEMS = 8
# Any character but a backslash (no escapes) and the control characters JSON must escape.
PLAIN_TEXT = "^[^\\\\\\x00-\\x1f]*$"
# The engines' capability statements DSPy reads (dspy.clients.capabilities).
SUPPORTED_PARAMS = frozenset(
    {"temperature", "max_tokens", "top_p", "stop", "seed", "n", "response_format"}
)


class BoundedJSONAdapter(dspy.JSONAdapter):  # type: ignore[misc]  # DSPy is untyped
    """DSPy's JSON adapter, its schema bounded before it leaves: DSPy builds the schema as a
    pydantic model and sends it as it is; this sends it as OpenAI's `response_format`, with
    the bounds of `bounded_schema`, to a local engine and a remote service alike."""

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        super()._prepare_response_format(lm, lm_kwargs, signature)
        format_ = lm_kwargs.get("response_format")
        if isinstance(format_, type) and issubclass(format_, pydantic.BaseModel):
            schema = bounded_schema(format_.model_json_schema())
            spec = {"name": format_.__name__, "schema": schema, "strict": True}
            lm_kwargs["response_format"] = {"type": "json_schema", "json_schema": spec}


def adapter() -> Any:
    """The adapter programs run with: the JSON adapter, no native function calling."""
    return BoundedJSONAdapter(use_native_function_calling=False)


def bounded_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every unbounded string and array given a bound (a copy)."""
    bounded = copy.deepcopy(schema)
    _bound(bounded)
    return bounded


def _bound(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _bound(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _bound(value)
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    free = not any(k in node for k in ("enum", "const", "format", "pattern"))
    if "string" in kinds and free and "maxLength" not in node:
        node["maxLength"] = MAX_STRING_CHARS
        node["pattern"] = PLAIN_TEXT
    if "array" in kinds and "maxItems" not in node:
        node["maxItems"] = MAX_ARRAY_ITEMS


def openai_response_format(lm15_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """DSPy's canonical `response_format` (lm15's shape) as OpenAI's request field."""
    if lm15_format is None:
        return None
    if lm15_format.get("type") != "json_schema":
        return {"type": "json_object"}
    spec: dict[str, Any] = {
        "name": lm15_format.get("name") or "outputs",
        "schema": bounded_schema(lm15_format["schema"]),
    }
    if "strict" in lm15_format:
        spec["strict"] = lm15_format["strict"]
    return {"type": "json_schema", "json_schema": spec}
