"""Every difference between the hosted providers, in one table.

All of them speak OpenAI's chat completions API, more or less: Cohere through its compatibility
endpoint (chat only, no legacy completions), OpenRouter with optional attribution headers, and
each with its own error shape. The proxy asks this module where to send a request and how to
turn a provider's error into the OpenAI error body our clients expect.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Literal

ProviderName = Literal["openai", "cohere", "groq", "openrouter", "custom"]
PROVIDERS: tuple[ProviderName, ...] = ("openai", "cohere", "groq", "openrouter", "custom")
API_KEY_ENV = "MODELKUBE_UPSTREAM_API_KEY"


class UpstreamConfigError(ValueError):
    """The upstream settings cannot work; str() is one line."""


@dataclass(frozen=True)
class Provider:
    name: ProviderName
    base_url: str | None  # None: the user must give one
    text_completions: bool = True  # serves the legacy /completions endpoint
    headers: tuple[tuple[str, str], ...] = ()


_TABLE: dict[ProviderName, Provider] = {
    "openai": Provider("openai", "https://api.openai.com/v1"),
    "cohere": Provider("cohere", "https://api.cohere.ai/compatibility/v1", text_completions=False),
    "groq": Provider("groq", "https://api.groq.com/openai/v1", text_completions=False),
    # OpenRouter ranks apps by these; harmless elsewhere, but only it reads them.
    "openrouter": Provider(
        "openrouter",
        "https://openrouter.ai/api/v1",
        headers=(("x-title", "modelkube"), ("http-referer", "https://modelkube.io")),
    ),
    "custom": Provider("custom", None),
}


@dataclass(frozen=True)
class UpstreamTarget:
    """Where the proxy sends requests, and as what."""

    provider: Provider
    base_url: str
    model: str  # the provider's model id; requests name ours and get this instead
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the key is in here


def resolve_upstream(
    provider: str, base_url: str | None, model: str, api_key: str | None
) -> UpstreamTarget:
    if provider not in _TABLE:
        raise UpstreamConfigError(
            f"unknown upstream provider {provider!r}; one of {', '.join(PROVIDERS)}"
        )
    spec = _TABLE[provider]
    url = (base_url or spec.base_url or "").rstrip("/")
    if not url:
        raise UpstreamConfigError(f"provider {provider} needs --upstream-base-url")
    if not url.startswith(("http://", "https://")):
        raise UpstreamConfigError(f"upstream base URL {url!r} must start with http:// or https://")
    if not model.strip():
        raise UpstreamConfigError("--upstream-model must name the provider's model")
    headers = spec.headers
    if api_key:
        headers = (("authorization", f"Bearer {api_key.strip()}"), *headers)
    return UpstreamTarget(spec, url, model.strip(), headers)


def unsupported_endpoint(provider: Provider, endpoint: str) -> str | None:
    """Why `endpoint` ("chat" or "completions") cannot be proxied to `provider`, if it can't."""
    if endpoint == "completions" and not provider.text_completions:
        return (
            f"The upstream provider {provider.name} has no /v1/completions endpoint; "
            "use /v1/chat/completions."
        )
    return None


def error_body(provider: Provider, status: int, raw: bytes) -> dict[str, Any]:
    """A provider's error answer as OpenAI's error body, keeping its message."""
    message, code, kind = _error_fields(raw)
    if not message:
        text = raw.decode("utf-8", "replace").strip()
        message = text[:500] if text else f"HTTP {status}"
    return {
        "error": {
            "message": f"upstream {provider.name}: {message}",
            "type": kind or _error_type(status),
            "param": None,
            "code": code or f"upstream_{status}",
        }
    }


def _error_fields(raw: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, type) from the shapes providers use:
    OpenAI/Groq `{"error": {"message", "type", "code"}}`, OpenRouter the same with an integer
    code, Cohere `{"message": ...}`, and some gateways `{"error": "text"}` or `{"detail": ...}`."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "", None, None
    if not isinstance(body, dict):
        return "", None, None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        kind = error.get("type")
        return (
            str(error.get("message") or ""),
            str(code) if code is not None else None,
            kind if isinstance(kind, str) else None,
        )
    for key in ("error", "message", "detail"):
        if isinstance(body.get(key), str):
            return str(body[key]), None, None
    return "", None, None


def _error_type(status: int) -> str:
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"
