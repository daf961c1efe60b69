"""A chat request with tools, for the engine: its prompt, and the grammar of its output."""

import json
from typing import Any

from modelkube_native import Grammar, InvalidGrammarError

from modelkube_serving.engine.types import Engine
from modelkube_serving.errors import InvalidRequest
from modelkube_serving.protocol import ChatMessage
from modelkube_serving.services.tools.grammar import call_grammar, parameters_schema
from modelkube_serving.services.tools.plan import ToolPlan
from modelkube_serving.services.tools.prompt import (
    fallback_messages,
    native_messages,
    tool_dicts,
)


def encode_conversation(engine: Engine, messages: list[ChatMessage], plan: ToolPlan) -> list[int]:
    """The prompt's tokens, through the model's own template when it takes tools."""
    if engine.template_tools:
        return engine.encode_chat(native_messages(messages), tool_dicts(plan.offered) or None)
    return engine.encode_chat(fallback_messages(messages, plan.offered))


def tool_grammar(
    engine: Engine, plan: ToolPlan, answer_schema: dict[str, Any] | None
) -> Grammar | None:
    """The grammar of a forced call (None when the model may answer freely); with
    `answer_schema` (a JSON `response_format` under `auto`), calls or that JSON. Every
    offered function's `parameters` must compile, or the request is a 400 naming it."""
    for i, tool in enumerate(plan.offered):
        try:
            engine.grammar(json.dumps(parameters_schema(tool)))
        except InvalidGrammarError as exc:
            raise InvalidRequest(
                f"Invalid schema for function '{tool.function.name}': {exc}",
                param=f"tools.{i}.function.parameters",
            ) from exc
    if plan.forced:
        text = call_grammar(plan.forced, plan.parallel)
    elif plan.offered and answer_schema is not None:
        text = call_grammar(plan.offered, plan.parallel, answer_schema)
    else:
        return None
    try:
        return engine.lark(text)
    except InvalidGrammarError as exc:
        raise InvalidRequest(f"The tools cannot be enforced: {exc}", param="tools") from exc
