"""A ModelService in proxy mode: the runtime serves a hosted model through its own API.

The runtime keeps its admission, queueing, rate limits, API keys and metrics, and forwards
each request to the provider's OpenAI-compatible endpoint.
"""

from typing import Literal

from pydantic import Field

from modelkube_operator.api.schema import DATA_KEY, DNS_LABEL, ApiModel, cel


class UpstreamKeySelector(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=253, description="The Secret's name.")
    key: str = Field(
        pattern=DATA_KEY, max_length=253, description="The key holding the provider's API key."
    )


class CABundleSelector(ApiModel):
    name: str = Field(pattern=DNS_LABEL, max_length=253, description="The ConfigMap's name.")
    key: str = Field(
        pattern=DATA_KEY, max_length=253, description="The key holding PEM certificates."
    )


class Upstream(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "self.provider != 'custom' || has(self.baseURL)",
                "spec.upstream.baseURL is required when provider is custom",
            ),
        )
    }
    provider: Literal["openai", "cohere", "groq", "openrouter", "custom"] = Field(
        description="The hosted API; custom: any OpenAI-compatible endpoint at baseURL."
    )
    base_url: str | None = Field(
        default=None,
        alias="baseURL",
        pattern=r"^https?://",
        max_length=2048,
        description="The provider's OpenAI-compatible base URL (default: the provider's own).",
    )
    model: str = Field(
        min_length=1, max_length=256, description="The provider's model id, e.g. gpt-4o-mini."
    )
    api_key_secret_ref: UpstreamKeySelector | None = Field(
        default=None,
        description="The Secret key holding the provider's API key, given to the runtime as "
        "MODELKUBE_UPSTREAM_API_KEY.",
    )
    ca_bundle_ref: CABundleSelector | None = Field(
        default=None,
        alias="caBundleRef",
        description="A ConfigMap key of PEM certificates the runtime trusts besides the "
        "system's CAs, for a gateway behind a private CA.",
    )
