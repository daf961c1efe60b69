//! When to retry an upstream call and how long to wait first: pure, so every case is a test.

use std::time::{Duration, SystemTime};

/// Retries with exponential backoff; a server's `Retry-After` wins when it asks for longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    pub backoff_base: Duration,
    /// The longest wait; a `Retry-After` beyond it is not waited for: the answer goes back.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Statuses worth another attempt: rate limited, or the provider's side failed.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl RetryPolicy {
    /// The wait before attempt `retry` (1 for the first retry), or `None` to stop retrying.
    /// `jitter` in [0, 1) spreads clients apart: the wait is 50-100% of the backoff step.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        if let Some(asked) = retry_after {
            return (asked <= self.backoff_max).then_some(asked);
        }
        let step = self
            .backoff_base
            .saturating_mul(1u32 << (retry - 1).min(20));
        let capped = step.min(self.backoff_max);
        Some(capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

/// `Retry-After` as seconds (`"2"`, `"1.5"`) or an HTTP date; `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = policy();
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, None, 1.0), Some(Duration::from_millis(300)));
        assert_eq!(p.delay(1, None, 0.0), Some(Duration::from_millis(50)));
    }

    #[test]
    fn stops_after_max_retries() {
        assert_eq!(policy().delay(4, None, 0.5), None);
        assert_eq!(policy().delay(0, None, 0.5), None);
        let none = RetryPolicy {
            max_retries: 0,
            ..policy()
        };
        assert_eq!(none.delay(1, None, 0.5), None);
    }

    #[test]
    fn retry_after_is_honoured_unless_beyond_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(250)), 0.0),
            Some(Duration::from_millis(250))
        );
        assert_eq!(p.delay(1, Some(Duration::from_secs(30)), 0.0), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 404, 422, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
