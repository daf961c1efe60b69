"""What the native core raises: one class per error, subclassing the builtin that fits."""


class NativeError(Exception):
    """Any error from modelkube's native core."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TokenizerFileError(NativeError, OSError):
    """The tokenizer file cannot be read."""


class TokenizerParseError(NativeError, ValueError):
    """The tokenizer file is not a tokenizer the `tokenizers` library can load."""


class TokenIdError(NativeError, ValueError):
    """A token id outside the vocabulary."""


class InvalidUtf8Error(NativeError, ValueError):
    """Byte tokens that do not form UTF-8 (raised only in strict mode)."""


class UnknownRequestError(NativeError, KeyError):
    """A request handle that was never registered."""


class RequestFinishedError(UnknownRequestError):
    """A request handle that has already finished."""


class DuplicateRequestError(NativeError, ValueError):
    """A request handle registered twice."""


class QueueFullError(NativeError):
    """The admission queue is at its limit."""


class RateLimitedError(NativeError):
    """A key's rate limit is reached; `retry_after_s` says when to try again."""

    @property
    def retry_after_s(self) -> float:
        return float(self.args[1]) if len(self.args) > 1 else 1.0


class InvalidArgumentError(NativeError, ValueError):
    """An argument out of its range."""


class InvalidGrammarError(NativeError, ValueError):
    """A `response_format` schema that cannot be compiled (or is past the size bounds)."""


class GrammarError(NativeError):
    """Constrained decoding failed mid-generation (a token the grammar refuses)."""


class UpstreamError(NativeError):
    """A call to an upstream provider failed before it could answer."""


class UpstreamConnectError(UpstreamError, ConnectionError):
    """The upstream could not be reached (after the retries)."""


class UpstreamTimeoutError(UpstreamError, TimeoutError):
    """The upstream did not answer, or went silent mid-body, within its timeout."""


class UpstreamStreamError(UpstreamError, ConnectionError):
    """The upstream cut the response short after it had begun."""


class CircuitOpenError(UpstreamError):
    """Calls to a failing upstream are paused; `retry_after_s` says for how long."""

    @property
    def retry_after_s(self) -> float:
        return float(self.args[1]) if len(self.args) > 1 else 1.0


class LlamaLoadError(NativeError, OSError):
    """llama.cpp cannot load the GGUF file, or cannot make a context for it."""


class LlamaDecodeError(NativeError, RuntimeError):
    """A llama.cpp decode step failed (its KV cache full, or an internal error)."""
