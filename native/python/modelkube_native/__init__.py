"""modelkube's Rust core: the serving runtime's output path, admission and prefix index."""

from modelkube_native._native import Admission, OutputPath, PrefixIndex, Vocabulary, __version__
from modelkube_native.errors import (
    DuplicateRequestError,
    InvalidArgumentError,
    InvalidUtf8Error,
    NativeError,
    QueueFullError,
    RateLimitedError,
    RequestFinishedError,
    TokenIdError,
    TokenizerFileError,
    TokenizerParseError,
    UnknownRequestError,
)

__all__ = [
    "Admission",
    "DuplicateRequestError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "NativeError",
    "OutputPath",
    "PrefixIndex",
    "QueueFullError",
    "RateLimitedError",
    "RequestFinishedError",
    "TokenIdError",
    "TokenizerFileError",
    "TokenizerParseError",
    "UnknownRequestError",
    "Vocabulary",
    "__version__",
]
