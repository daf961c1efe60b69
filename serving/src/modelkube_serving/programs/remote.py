"""The served model `modelkube optimize` compiles against: standard DSPy over the OpenAI API."""

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

KEY_VARIABLES = ("MODELKUBE_API_KEY", "OPENAI_API_KEY")
# LiteLLM, imported by DSPy on first use, fetches a cost map from the internet unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class ServiceError(Exception):
    """The service cannot be reached or fails; str() is one line."""


class ServiceArgumentError(ValueError):
    """The URL or model asked for is wrong; str() is one line."""


def api_base(url: str) -> str:
    """`http://host:port`, with or without `/v1`, as the base the OpenAI clients want."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServiceArgumentError(f"--service-url must be an http:// or https:// URL: {url!r}")
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def api_key(env: Mapping[str, str] = os.environ) -> str:
    # An open runtime takes any key, and the OpenAI client refuses to start without one.
    return next((env[name] for name in KEY_VARIABLES if env.get(name)), "unused")


def served_models(base: str, key: str, timeout: float = 10.0) -> list[str]:
    try:
        response = httpx.get(
            f"{base}/models", headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot reach {base}: {str(exc) or type(exc).__name__}") from exc
    if response.status_code == 401:
        names = " or ".join(KEY_VARIABLES)
        raise ServiceError(f"{base} refused the API key (401): set {names}")
    if response.status_code != 200:
        raise ServiceError(
            f"GET {base}/models answered {response.status_code}: {_reason(response)}"
        )
    try:
        return [str(model["id"]) for model in response.json()["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceError(f"GET {base}/models did not answer an OpenAI model list") from exc


def choose_model(models: list[str], wanted: str | None, base: str) -> str:
    if not models:
        raise ServiceError(f"{base} serves no model")
    if wanted is None:
        return models[0]
    if wanted not in models:
        raise ServiceArgumentError(f"--model {wanted} is not served by {base}; it serves {models}")
    return wanted


def remote_lm(base: str, model: str, key: str, max_tokens: int, retries: int = 2) -> Any:
    import dspy

    from modelkube_serving.programs.structured import SUPPORTED_PARAMS

    class ServedLM(dspy.LM):  # type: ignore[misc]  # DSPy is untyped
        """A served model: it takes a JSON schema as `response_format` (DSPy cannot know
        that of a model name it has no metadata for), so the JSON adapter sends one."""

        @property
        def supports_response_schema(self) -> bool:
            return True

        @property
        def supported_params(self) -> set[str]:
            return set(SUPPORTED_PARAMS)

    return ServedLM(
        f"openai/{model}",
        api_base=base,
        api_key=key,
        cache=False,  # every trial must reach the model: a cached answer scores nothing new
        max_tokens=max_tokens,
        temperature=0.0,  # DSPy raises it itself where it wants varied samples
        num_retries=retries,  # LiteLLM's, with backoff: a 429 from a full queue passes
    )


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"]).splitlines()[0][:300]
    except (ValueError, KeyError, TypeError, IndexError):
        return response.text.strip().splitlines()[0][:300] if response.text.strip() else "no body"
