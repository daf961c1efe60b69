"""The provider table: where requests go, and providers' error shapes as OpenAI's."""

import json

import pytest

from modelkube_serving.upstream.providers import (
    UpstreamConfigError,
    error_body,
    resolve_upstream,
    unsupported_endpoint,
)


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("openai", "https://api.openai.com/v1"),
        ("cohere", "https://api.cohere.ai/compatibility/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("openrouter", "https://openrouter.ai/api/v1"),
    ],
)
def test_each_provider_has_its_default_base_url(provider: str, url: str) -> None:
    target = resolve_upstream(provider, None, "m", "sk-1")
    assert target.base_url == url
    assert ("authorization", "Bearer sk-1") in target.headers


def test_a_base_url_overrides_and_loses_its_trailing_slash() -> None:
    target = resolve_upstream("openai", "http://gateway.local/v1/", "m", None)
    assert target.base_url == "http://gateway.local/v1"
    assert target.headers == ()  # no key: nothing sent


def test_openrouter_gets_its_attribution_headers() -> None:
    names = {name for name, _ in resolve_upstream("openrouter", None, "m", "k").headers}
    assert {"x-title", "http-referer", "authorization"} <= names


def test_the_key_is_not_in_the_targets_repr() -> None:
    assert "sk-secret" not in repr(resolve_upstream("openai", None, "m", "sk-secret"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bedrock", None, "m"), "unknown upstream provider 'bedrock'"),
        (("custom", None, "m"), "provider custom needs --upstream-base-url"),
        (("custom", "ftp://x", "m"), "must start with http:// or https://"),
        (("openai", None, " "), "--upstream-model must name"),
    ],
)
def test_unusable_settings_are_one_line_errors(
    args: tuple[str, str | None, str], message: str
) -> None:
    with pytest.raises(UpstreamConfigError, match=message):
        resolve_upstream(*args, None)


def test_chat_only_providers_refuse_text_completions() -> None:
    cohere = resolve_upstream("cohere", None, "command-r", None).provider
    assert unsupported_endpoint(cohere, "chat") is None
    assert "no /v1/completions" in (unsupported_endpoint(cohere, "completions") or "")
    assert (
        unsupported_endpoint(resolve_upstream("openai", None, "m", None).provider, "completions")
        is None
    )


@pytest.mark.parametrize(
    ("raw", "message", "code", "kind"),
    [
        (  # OpenAI and Groq
            {
                "error": {
                    "message": "bad key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            "bad key",
            "invalid_api_key",
            "invalid_request_error",
        ),
        (
            {"error": {"message": "no credits", "code": 402}},
            "no credits",
            "402",
            "invalid_request_error",
        ),
        (
            {"message": "invalid request: model"},
            "invalid request: model",
            "upstream_400",
            "invalid_request_error",
        ),
        (
            {"error": "plain text error"},
            "plain text error",
            "upstream_400",
            "invalid_request_error",
        ),
        ({"detail": "Not Found"}, "Not Found", "upstream_400", "invalid_request_error"),
    ],
)
def test_error_shapes_become_openai_error_bodies(
    raw: dict[str, object], message: str, code: str, kind: str
) -> None:
    provider = resolve_upstream("groq", None, "m", None).provider
    body = error_body(provider, 400, json.dumps(raw).encode())
    assert body == {
        "error": {"message": f"upstream groq: {message}", "type": kind, "param": None, "code": code}
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, "authentication_error"),
        (403, "permission_error"),
        (429, "rate_limit_error"),
        (503, "server_error"),
    ],
)
def test_non_json_errors_keep_their_text_and_get_a_type_by_status(status: int, kind: str) -> None:
    provider = resolve_upstream("openai", None, "m", None).provider
    body = error_body(provider, status, b"<html>Bad Gateway</html>")
    assert body["error"]["message"] == "upstream openai: <html>Bad Gateway</html>"
    assert body["error"]["type"] == kind
    assert (
        error_body(provider, status, b"")["error"]["message"] == f"upstream openai: HTTP {status}"
    )
