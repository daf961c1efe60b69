//! `CoreError` onto the Python exception hierarchy of `modelkube_native.errors`.

use modelkube_core::CoreError;
use pyo3::{import_exception, PyErr};

import_exception!(modelkube_native.errors, TokenizerFileError);
import_exception!(modelkube_native.errors, TokenizerParseError);
import_exception!(modelkube_native.errors, TokenIdError);
import_exception!(modelkube_native.errors, InvalidUtf8Error);
import_exception!(modelkube_native.errors, UnknownRequestError);
import_exception!(modelkube_native.errors, RequestFinishedError);
import_exception!(modelkube_native.errors, DuplicateRequestError);
import_exception!(modelkube_native.errors, QueueFullError);
import_exception!(modelkube_native.errors, RateLimitedError);
import_exception!(modelkube_native.errors, InvalidArgumentError);
import_exception!(modelkube_native.errors, InvalidGrammarError);
import_exception!(modelkube_native.errors, GrammarError);
import_exception!(modelkube_native.errors, UpstreamConnectError);
import_exception!(modelkube_native.errors, UpstreamTimeoutError);
import_exception!(modelkube_native.errors, UpstreamStreamError);
import_exception!(modelkube_native.errors, CircuitOpenError);

#[allow(clippy::needless_pass_by_value)] // `map_err(to_py)` hands the error over by value
pub fn to_py(err: CoreError) -> PyErr {
    let message = err.to_string();
    match err {
        CoreError::TokenizerFile { .. } => TokenizerFileError::new_err(message),
        CoreError::TokenizerParse { .. } => TokenizerParseError::new_err(message),
        CoreError::TokenId { .. } => TokenIdError::new_err(message),
        CoreError::InvalidUtf8 { .. } => InvalidUtf8Error::new_err(message),
        CoreError::UnknownRequest(_) => UnknownRequestError::new_err(message),
        CoreError::RequestFinished(_) => RequestFinishedError::new_err(message),
        CoreError::DuplicateRequest(_) => DuplicateRequestError::new_err(message),
        CoreError::QueueFull { .. } => QueueFullError::new_err(message),
        CoreError::RateLimited { retry_after_s, .. } => {
            RateLimitedError::new_err((message, retry_after_s))
        }
        CoreError::InvalidArgument(_) => InvalidArgumentError::new_err(message),
        CoreError::InvalidGrammar(_) => InvalidGrammarError::new_err(message),
        CoreError::Grammar(_) => GrammarError::new_err(message),
        CoreError::UpstreamConnect { .. } => UpstreamConnectError::new_err(message),
        CoreError::UpstreamTimeout { .. } => UpstreamTimeoutError::new_err(message),
        CoreError::UpstreamStream { .. } => UpstreamStreamError::new_err(message),
        CoreError::CircuitOpen { retry_after_s, .. } => {
            CircuitOpenError::new_err((message, retry_after_s))
        }
    }
}
