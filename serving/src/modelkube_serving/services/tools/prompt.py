"""The conversation as the chat template reads it, tools included.

A template that takes a `tools` variable (Qwen's, Hermes', Llama 3.1's, ...) gets the tools
and the structured messages as Hugging Face's `apply_chat_template` expects them. A template
that does not (SmolLM2's, the built-in tiny model's) gets the fallback: the tools listed in
the system prompt with the Hermes call syntax the output parser reads, earlier calls written
in that syntax, and tool results as user turns in `<tool_response>` tags, as Qwen2.5's
template writes them.
"""

import json
from typing import Any

from modelkube_serving.protocol import ChatMessage
from modelkube_serving.protocol_tools import MessageToolCall, Tool

FALLBACK_TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def tool_dicts(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    return [tool.model_dump(exclude_none=True) for tool in tools]


def native_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages for a template that knows tools: calls with their arguments as objects."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.name is not None:
            item["name"] = m.name
        if m.tool_calls:
            item["tool_calls"] = [_native_call(c) for c in m.tool_calls]
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


def fallback_messages(messages: list[ChatMessage], tools: tuple[Tool, ...]) -> list[dict[str, str]]:
    """Messages for a template that knows only roles and text."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "tool":
            response = f"<tool_response>\n{m.text()}\n</tool_response>"
            if (
                out
                and out[-1]["role"] == "user"
                and out[-1]["content"].endswith("</tool_response>")
            ):
                out[-1]["content"] += "\n" + response
            else:
                out.append({"role": "user", "content": response})
            continue
        content = m.text()
        for call in m.tool_calls or ():
            content += ("\n" if content else "") + _hermes_call(call)
        out.append({"role": m.role, "content": content})
    if tools:
        listed = "\n".join(json.dumps(t) for t in tool_dicts(tools))
        prompt = FALLBACK_TOOLS_PROMPT.format(tools=listed)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {"role": out[0]["role"], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _arguments(call: MessageToolCall) -> Any:
    """The arguments as a JSON value when they are JSON text, else as the text."""
    try:
        return json.loads(call.function.arguments)
    except ValueError:
        return call.function.arguments


def _native_call(call: MessageToolCall) -> dict[str, Any]:
    function = {"name": call.function.name, "arguments": _arguments(call)}
    return {"id": call.id, "type": "function", "function": function}


def _hermes_call(call: MessageToolCall) -> str:
    body = json.dumps({"name": call.function.name, "arguments": _arguments(call)})
    return f"<tool_call>\n{body}\n</tool_call>"
