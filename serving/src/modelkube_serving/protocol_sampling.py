"""The sampling and request-shape fields of OpenAI's newer API, kept apart from `protocol`.

- `logit_bias`: token id (as a JSON string) -> bias in [-100, 100]; -100 bans the token.
- `n`: at most `MAX_CHOICES` choices per request, all from one prefill.
- Fields that change nothing for a model served here are accepted: `safety_identifier`,
  `prompt_cache_key` (the prefix cache finds shared prefixes by itself), `verbosity`,
  `service_tier`, `store`, `metadata`, `user`.
- Fields that ask for what this runtime cannot do are a 400 that names them: `audio`,
  `modalities` with anything but text, `prediction`, `web_search_options`.
"""

from typing import Any, Literal

from pydantic import BaseModel, field_validator

# OpenAI allows up to 128; each choice is a row of the batch, so fewer are served here.
MAX_CHOICES = 16
# OpenAI's own bound on the number of biased tokens.
MAX_LOGIT_BIAS = 300
LOGIT_BIAS_LIMIT = 100.0


def check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    """Keys are token ids written as strings; values in [-100, 100]."""
    if value is None:
        return None
    if len(value) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias may hold at most {MAX_LOGIT_BIAS} tokens, not {len(value)}")
    for key, bias in value.items():
        if not key.isascii() or not key.isdigit():
            raise ValueError(
                f"Invalid key in 'logit_bias': {key!r}. Keys must be token ids, "
                "non-negative integers written as strings."
            )
        if not -LOGIT_BIAS_LIMIT <= bias <= LOGIT_BIAS_LIMIT:
            raise ValueError(
                f"Invalid value for token {key} in 'logit_bias': {bias}. "
                "Biases must be between -100 and 100."
            )
    return value


def token_biases(value: dict[str, float] | None) -> dict[int, float]:
    """`logit_bias` by token id, without the zero biases that change nothing."""
    return {int(k): float(v) for k, v in (value or {}).items() if v}


class NewerChatFields(BaseModel):
    """Chat fields of OpenAI's newer API: accepted where they change nothing here, refused
    by name where they ask for what this runtime cannot do (text in, text out)."""

    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, value: list[str] | None) -> list[str] | None:
        if value and "audio" in value:
            raise ValueError("audio output is not supported by this runtime; ask for ['text']")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("audio output is not supported by this runtime (text only)")
        return value

    @field_validator("prediction")
    @classmethod
    def _no_prediction(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("predicted outputs are not supported by this runtime")
        return value

    @field_validator("web_search_options")
    @classmethod
    def _no_search(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("web search is not available: this runtime serves a model offline")
        return value
