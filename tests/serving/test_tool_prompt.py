"""The prompt of a tool conversation: the fallback for templates without tools, and which
templates take them."""

import json
from types import SimpleNamespace

from modelkube_serving.engine.chat_template import template_takes_tools
from modelkube_serving.models.builtin import CHAT_TEMPLATE
from modelkube_serving.protocol import ChatMessage
from modelkube_serving.protocol_tools import Tool
from modelkube_serving.services.tools.grammar import call_grammar
from modelkube_serving.services.tools.prompt import fallback_messages, native_messages

TOOL = Tool.model_validate(
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
)
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
CONVERSATION = [
    ChatMessage.model_validate(m)
    for m in [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Go."},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
]
QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools' }}{%- for tool in tools %}"
    "{{- tool | tojson }}{%- endfor %}{%- endif %}"
    "{%- for message in messages %}{{- message.content }}{%- endfor %}"
)


def test_without_tools_the_messages_are_the_plain_ones() -> None:
    plain = [ChatMessage.model_validate({"role": "user", "content": "hi"})]
    assert fallback_messages(plain, ()) == [{"role": "user", "content": "hi"}]


def test_the_fallback_lists_tools_in_the_system_prompt_and_writes_calls_as_hermes() -> None:
    system, user, assistant, tool = fallback_messages(CONVERSATION, (TOOL,))
    assert system["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps(TOOL.model_dump(exclude_none=True)) in system["content"]
    assert "<tool_call>" in system["content"]
    assert user == {"role": "user", "content": "Go."}
    assert assistant == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>',
    }
    assert tool == {"role": "user", "content": "<tool_response>\ndone\n</tool_response>"}


def test_a_conversation_without_a_system_prompt_gets_one_for_the_tools() -> None:
    messages = fallback_messages(CONVERSATION[1:2], (TOOL,))
    assert [m["role"] for m in messages] == ["system", "user"]


def test_templates_that_take_tools_get_structured_calls() -> None:
    native = native_messages(CONVERSATION)
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert native[3]["tool_call_id"] == "call_1"
    assert template_takes_tools(SimpleNamespace(chat_template=QWEN_LIKE))
    assert not template_takes_tools(SimpleNamespace(chat_template=CHAT_TEMPLATE))
    assert not template_takes_tools(SimpleNamespace(chat_template=None))


def test_a_forced_call_grammar_names_each_function_first() -> None:
    grammar = call_grammar((TOOL,), parallel=False)
    assert grammar.startswith("start: call\ncall: ")
    assert '"name": {"const": "f"}' in grammar
    assert 'call ("\\n" call)*' in call_grammar((TOOL,), parallel=True)
