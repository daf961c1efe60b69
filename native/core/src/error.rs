//! The one error type of the core; the binding maps each variant to a Python exception.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("cannot read the tokenizer file {path}: {reason}")]
    TokenizerFile { path: String, reason: String },
    #[error("the tokenizer file {path} does not parse: {reason}")]
    TokenizerParse { path: String, reason: String },
    #[error("token id {token} is outside the vocabulary (size {vocab_size}) in request {request}")]
    TokenId {
        request: String,
        token: i64,
        vocab_size: usize,
    },
    #[error("request {request} produced invalid UTF-8 (bytes {bytes:02x?})")]
    InvalidUtf8 { request: String, bytes: Vec<u8> },
    #[error("unknown request {0}")]
    UnknownRequest(String),
    #[error("request {0} has already finished")]
    RequestFinished(String),
    #[error("request {0} is already registered")]
    DuplicateRequest(String),
    #[error("the queue is full ({queued} queued, limit {limit}); retry later")]
    QueueFull { queued: usize, limit: usize },
    #[error("rate limit for key {key} reached ({limit}); retry in {retry_after_s:.1} s")]
    RateLimited {
        key: String,
        limit: &'static str,
        retry_after_s: f64,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("invalid response_format: {0}")]
    InvalidGrammar(String),
    #[error("constrained decoding failed: {0}")]
    Grammar(String),
    #[error("cannot reach the upstream {url}: {reason}")]
    UpstreamConnect { url: String, reason: String },
    #[error("the upstream {url} timed out {phase} ({seconds:.1} s)")]
    UpstreamTimeout {
        url: String,
        phase: &'static str,
        seconds: f64,
    },
    #[error("the upstream {url} cut the response short: {reason}")]
    UpstreamStream { url: String, reason: String },
    #[error("the upstream {url} is failing; calls resume in {retry_after_s:.1} s")]
    CircuitOpen { url: String, retry_after_s: f64 },
}

pub type CoreResult<T> = Result<T, CoreError>;
