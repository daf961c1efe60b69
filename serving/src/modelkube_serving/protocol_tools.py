"""Wire models of tool calling: `tools`, `tool_choice`, and the calls an assistant message
carries back in a conversation. Their shapes are checked here; what depends on the whole
request (a `tool_choice` naming a function the request lacks, a `parameters` schema that
does not compile) is checked by `modelkube_serving.tools`.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's rule for function names.
FUNCTION_NAME = r"^[a-zA-Z0-9_-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=FUNCTION_NAME)
    description: str | None = None
    # A JSON schema of the arguments object; none means the function takes no arguments.
    parameters: dict[str, Any] | None = None
    # Accepted: the arguments of a call the grammar enforces always match the schema.
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str = Field(min_length=1)


class NamedToolChoice(_Strict):
    """`{"type": "function", "function": {"name": ...}}`: call this function."""

    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(_Strict):
    name: str = Field(min_length=1)
    # The arguments as JSON text, as the response that made the call gave them.
    arguments: str


class MessageToolCall(_Strict):
    """A call an assistant message made earlier in the conversation."""

    id: str = Field(min_length=1)
    type: Literal["function"]
    function: CalledFunction
