"""The grammar a forced call follows (`tool_choice` `required` or a named function): the
Hermes syntax around a JSON object whose `name` is one of the forced functions and whose
`arguments` match that function's `parameters`, in llguidance's Lark dialect.

JSON inside is laid out as `json.dumps` does (", " and ": "), as for `response_format`: free
whitespace would let a random-weight model pad a call with blank lines until max_tokens.
"""

import json
from typing import Any

from modelkube_serving.protocol_tools import Tool

# A function without `parameters` takes none: its arguments are `{}`.
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def parameters_schema(tool: Tool) -> dict[str, Any]:
    return tool.function.parameters or NO_PARAMETERS


def call_schema(tools: tuple[Tool, ...]) -> dict[str, Any]:
    """A JSON schema of one call to any of `tools`: name first, then arguments."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": parameters_schema(tool),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": LAYOUT}


def call_grammar(
    tools: tuple[Tool, ...], parallel: bool, alternative: dict[str, Any] | None = None
) -> str:
    """One call, or with `parallel` one or more, each in its own tags; with `alternative`
    (a `response_format` schema, under `tool_choice: auto`), that JSON instead of calls."""
    call = f'"<tool_call>\\n" %json {json.dumps(call_schema(tools))} "\\n</tool_call>"'
    calls = 'call ("\\n" call)*' if parallel else "call"
    if alternative is not None:
        answer = {"x-guidance": LAYOUT, **alternative}
        calls = f"{calls} | %json {json.dumps(answer)}"
    return f"start: {calls}\ncall: {call}\n"
