"""Request bodies of the OpenAI endpoints, validated the way OpenAI validates them.

Two levels share one set of field rules. The envelopes (`ChatEnvelope`, `CompletionEnvelope`)
hold what any OpenAI-compatible server checks, and let every other field through: proxy mode
validates with them and forwards the rest to its provider. The local engine's requests extend
them: unknown fields are rejected (OpenAI answers "Unrecognized request argument"), and fields
OpenAI accepts but this runtime cannot honour are rejected with a clear message unless they
hold their neutral value, so nothing is silently ignored.

`null` is accepted wherever OpenAI's schema marks a field nullable, and means its default:
some clients send every field, unset ones as null.
"""

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelkube_serving.protocol_sampling import MAX_CHOICES, NewerChatFields, check_logit_bias
from modelkube_serving.protocol_tools import MessageToolCall, Tool, ToolChoice

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Role = Literal["system", "developer", "user", "assistant", "tool"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
MAX_STOP_SEQUENCES = 4


class _Strict(BaseModel):
    # JSON types as OpenAI checks them: "yes" is no boolean, "3" no integer.
    model_config = ConfigDict(extra="forbid", strict=True)


def _without_nulls(data: Any) -> Any:
    """Top-level nulls mean "the default": dropped before validation, so defaults apply."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    # An assistant's calls (its content may then be null), and the call a tool message answers.
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> "ChatMessage":
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content is required for role '{self.role}'")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls are only allowed in assistant messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message requires tool_call_id: the id of the call it answers")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError("tool_call_id is only allowed in tool messages")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = False


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    # `schema` would shadow BaseModel.schema; the wire name stays "schema".
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    """`text`; `json_object` (any JSON object); `json_schema` (output matching its schema).
    The two JSON formats are enforced by constrained decoding."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format json_schema requires its json_schema field")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"response_format {self.type} takes no json_schema field")
        return self

    def schema_text(self) -> str | None:
        """The schema to constrain to, as JSON text; None is any JSON object."""
        if self.json_schema is None or not self.json_schema.schema_:
            return None
        return json.dumps(self.json_schema.schema_)


class _Envelope(BaseModel):
    """The fields every mode checks alike; other fields pass (proxy mode forwards them)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    stream: bool = False
    # vLLM's extension: lower values are admitted first when requests queue.
    priority: int = Field(default=0, ge=-1000, le=1000)

    _nulls = model_validator(mode="before")(_without_nulls)


class ChatEnvelope(_Envelope):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionEnvelope(_Envelope):
    prompt: str | list[str] | list[int] | list[list[int]]


class _SamplingFields(_Envelope):
    model_config = ConfigDict(extra="forbid", strict=True)

    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    stream_options: StreamOptions | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extension: generate to max_tokens even past end-of-sequence (benchmarks, tests).
    ignore_eos: bool = False
    # vLLM's extension: special tokens (<|endoftext|>, <|im_end|>) are left out of the text
    # unless false.
    skip_special_tokens: bool = True

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value == "":
            raise ValueError("stop sequences must not be empty")
        if isinstance(value, list):
            if len(value) > MAX_STOP_SEQUENCES:
                raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
            if any(not s for s in value):
                raise ValueError("stop sequences must not be empty")
        return value

    _logit_bias = field_validator("logit_bias")(check_logit_bias)

    @model_validator(mode="after")
    def _unsupported(self) -> "_SamplingFields":
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(NewerChatFields, _SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    @model_validator(mode="after")
    def _chat_rules(self) -> "ChatCompletionRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] = Field(min_length=1)
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)

    @model_validator(mode="after")
    def _completion_rules(self) -> "CompletionRequest":
        several = isinstance(self.prompt, list) and len(self.prompt) > 1
        if several and isinstance(self.prompt[0], str):
            raise ValueError("only one prompt per request is supported")
        if self.echo or self.suffix:
            raise ValueError("echo and suffix are not supported by this runtime")
        return self
