//! Calls to an upstream provider's HTTP API, for the runtime's proxy mode.

mod breaker;
mod client;
mod policy;

pub use breaker::{BreakerState, CircuitBreaker};
pub use client::{Answer, BodyStream, ClientConfig, UpstreamClient};
pub use policy::{parse_retry_after, retryable_status, RetryPolicy};
