"""The local upstream's canned HTTP responses, built once at start.

Non-streaming requests get one fixed completion with usage; `"stream": true` gets `chunks`
content chunks, a finish chunk (and a usage chunk when the request asks for it) and
`data: [DONE]`, in chunked transfer encoding. No JSON is parsed per request: the body is only
searched for `"stream": true` and `"include_usage"`, so the upstream stays far faster than the
proxies under test.

Why canned: this stands in for the hosted provider, which cannot be reached from here, not for
any part of ours (our runtime, native client and the LiteLLM proxy and openai client are all
real). A real runtime on builtin://tiny as the upstream answers a few dozen requests a second on
2 cores; every proxy would then measure the model, not itself. The proxy tests do use that real
runtime as their upstream (tests/serving/test_upstream_proxy.py).
"""

import json
import re
import time

STREAM = re.compile(rb'"stream"\s*:\s*true')
MODEL = "bench-upstream"
CREATED = int(time.time())
WORDS = ("Hello", "!", " This", " is", " a", " short", " benchmark", " reply", ".")


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": 12,
        "completion_tokens": completion_tokens,
        "total_tokens": 12 + completion_tokens,
    }


def _completion() -> bytes:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "".join(WORDS)},
        "logprobs": None,
        "finish_reason": "stop",
    }
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [choice],
        "usage": _usage(len(WORDS)),
    }
    return json.dumps(completion).encode()


def _chunk(
    delta: dict[str, str], finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    body: dict[str, object] = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
        "model": MODEL,
        "choices": [] if usage else [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish}],
    }  # fmt: skip
    if usage:
        body["usage"] = usage
    event = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def stream_body(chunks: int, include_usage: bool) -> bytes:
    """`chunks` content chunks between a role chunk and a finish chunk, as HTTP chunks."""
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": WORDS[i % len(WORDS)]}) for i in range(chunks)]
    parts.append(_chunk({}, finish="stop"))
    if include_usage:
        parts.append(_chunk({}, usage=_usage(chunks)))
    done = b"data: [DONE]\n\n"
    parts.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    return b"".join(parts)


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


class Responses:
    def __init__(self, chunks: int) -> None:
        self.completion = _response(b"200 OK", b"application/json", _completion())
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache"
        head += b"\r\ntransfer-encoding: chunked\r\n\r\n"
        self.stream = head + stream_body(chunks, include_usage=False)
        self.stream_usage = head + stream_body(chunks, include_usage=True)
        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "b"}]}
        self.models = _response(b"200 OK", b"application/json", json.dumps(models).encode())
        self.health = _response(b"200 OK", b"text/plain", b"ok")
        self.not_found = _response(b"404 Not Found", b"text/plain", b"not found")
        self.unsupported = _response(b"501 Not Implemented", b"text/plain", b"no chunked bodies")

    def answer(self, target: bytes, body: bytes) -> bytes:
        if target.endswith(b"/chat/completions"):
            if STREAM.search(body) is None:
                return self.completion
            return self.stream_usage if b'"include_usage"' in body else self.stream
        if target.endswith(b"/models"):
            return self.models
        return self.health if target == b"/health" else self.not_found
