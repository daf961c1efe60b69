"""Every error the API returns. Each class knows its HTTP status; app.py renders the body."""

from typing import Any


def _encodable(text: str) -> str:
    """What a message quotes of the request (a key, a name) may hold a lone UTF-16 surrogate,
    which no UTF-8 body can carry: it is written as its escape instead of failing the error
    response itself into a 500."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class APIError(Exception):
    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": _encodable(self.message),
                "type": self.error_type,
                "param": None if self.param is None else _encodable(self.param),
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(APIError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PermissionDenied(APIError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class Conflict(APIError):
    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class ClusterError(APIError):
    """The Kubernetes API server failed a call the runtime needed (fine-tuning, files)."""

    status_code = 502
    error_type = "server_error"
    code = "cluster_error"


class PayloadTooLarge(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class Unprocessable(APIError):
    status_code = 422
    error_type = "invalid_request_error"


class RetryLater(APIError):
    """An error that says when to try again, in a Retry-After header."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class QueueFull(RetryLater):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"


class RateLimited(QueueFull):
    code = "rate_limit_exceeded"


class QueueTimeout(RetryLater):
    """Queued past its deadline: the gateway-timeout of a server that was too busy."""

    status_code = 504
    error_type = "timeout_error"
    code = "queue_timeout"


class Unavailable(APIError):
    status_code = 503
    error_type = "server_error"
    code = "unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class EngineFailure(APIError):
    status_code = 500
    error_type = "server_error"
    code = "engine_error"


class NoReadyReplica(RetryLater):
    """The gateway held a request for a model with no ready replica (scaling up from zero,
    or all its pods gone) past its hold timeout."""

    status_code = 503
    error_type = "server_error"
    code = "model_not_ready"


class UpstreamAnswered(APIError):
    """A provider's own error answer, passed on in OpenAI's shape. Its 5xx become a 502: the
    failure is the provider's, not ours, and the retries have been spent."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None) -> None:
        error = body["error"]
        super().__init__(error["message"], code=error["code"])
        self.status_code = 502 if status >= 500 else status
        self.error_type = error["type"]
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after else {}


class UpstreamUnreachable(APIError):
    status_code = 502
    error_type = "server_error"
    code = "upstream_unreachable"


class UpstreamTimedOut(APIError):
    status_code = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamPaused(RetryLater):
    """The circuit breaker is open: the provider failed repeatedly and gets a rest."""

    status_code = 503
    error_type = "server_error"
    code = "upstream_circuit_open"
