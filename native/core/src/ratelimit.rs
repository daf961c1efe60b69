//! Token buckets per API key: requests per minute and tokens per minute.

use std::collections::HashMap;

use crate::error::{CoreError, CoreResult};

/// Keys idle long enough to have refilled are dropped past this many, to bound memory.
const MAX_IDLE_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// None: unlimited.
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    updated: f64,
}

impl Bucket {
    fn full(capacity: u64, now: f64) -> Self {
        Self {
            level: capacity as f64,
            updated: now,
        }
    }

    fn refill(&mut self, capacity: u64, now: f64) {
        let rate = capacity as f64 / 60.0;
        let elapsed = (now - self.updated).max(0.0);
        self.level = (self.level + elapsed * rate).min(capacity as f64);
        self.updated = now;
    }

    /// Seconds until `need` is available (0 when it is now).
    fn wait_for(&self, capacity: u64, need: f64) -> f64 {
        if self.level >= need {
            0.0
        } else {
            (need - self.level) / (capacity as f64 / 60.0)
        }
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<String, (Bucket, Bucket)>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> CoreResult<Self> {
        if limits.requests_per_minute == Some(0) || limits.tokens_per_minute == Some(0) {
            return Err(CoreError::InvalidArgument(
                "rate limits must be positive (leave one unset for no limit)".into(),
            ));
        }
        Ok(Self {
            limits,
            buckets: HashMap::new(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one request and `cost` tokens from `key`'s buckets, or says how long to wait.
    /// Nothing is taken unless both buckets have enough.
    pub fn acquire(&mut self, key: &str, cost: u64, now: f64) -> CoreResult<()> {
        let (rpm, tpm) = (
            self.limits.requests_per_minute,
            self.limits.tokens_per_minute,
        );
        if rpm.is_none() && tpm.is_none() {
            return Ok(());
        }
        if let Some(tpm) = tpm {
            if cost > tpm {
                return Err(CoreError::InvalidArgument(format!(
                    "the request needs up to {cost} tokens, more than the limit of {tpm} tokens per minute"
                )));
            }
        }
        if self.buckets.len() >= MAX_IDLE_KEYS {
            self.forget_idle(now);
        }
        let capacity = (rpm.unwrap_or(1), tpm.unwrap_or(1));
        let (requests, tokens) = self
            .buckets
            .entry(key.to_string())
            .or_insert_with(|| (Bucket::full(capacity.0, now), Bucket::full(capacity.1, now)));
        let mut wait: (f64, &'static str) = (0.0, "");
        if let Some(rpm) = rpm {
            requests.refill(rpm, now);
            wait = (requests.wait_for(rpm, 1.0), "requests per minute");
        }
        if let Some(tpm) = tpm {
            tokens.refill(tpm, now);
            let token_wait = tokens.wait_for(tpm, cost as f64);
            if token_wait > wait.0 {
                wait = (token_wait, "tokens per minute");
            }
        }
        if wait.0 > 0.0 {
            return Err(CoreError::RateLimited {
                key: key.to_string(),
                limit: wait.1,
                retry_after_s: wait.0,
            });
        }
        if rpm.is_some() {
            requests.level -= 1.0;
        }
        if tpm.is_some() {
            tokens.level -= cost as f64;
        }
        Ok(())
    }

    fn forget_idle(&mut self, now: f64) {
        let limits = self.limits;
        self.buckets.retain(|_, (requests, tokens)| {
            let mut r = *requests;
            let mut t = *tokens;
            let rpm = limits.requests_per_minute.unwrap_or(1);
            let tpm = limits.tokens_per_minute.unwrap_or(1);
            r.refill(rpm, now);
            t.refill(tpm, now);
            r.level < rpm as f64 || t.level < tpm as f64
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_refill_over_time() {
        let mut rl = RateLimiter::new(Limits {
            requests_per_minute: Some(2),
            tokens_per_minute: None,
        })
        .unwrap();
        rl.acquire("a", 10, 0.0).unwrap();
        rl.acquire("a", 10, 0.0).unwrap();
        let Err(CoreError::RateLimited {
            retry_after_s,
            limit,
            ..
        }) = rl.acquire("a", 10, 0.0)
        else {
            panic!("expected a rate limit");
        };
        assert_eq!(limit, "requests per minute");
        assert!((retry_after_s - 30.0).abs() < 1e-9);
        rl.acquire("b", 10, 0.0).unwrap(); // other keys are not affected
        rl.acquire("a", 10, 30.0).unwrap();
    }

    #[test]
    fn tokens_per_minute_and_oversized_requests() {
        let mut rl = RateLimiter::new(Limits {
            requests_per_minute: None,
            tokens_per_minute: Some(600),
        })
        .unwrap();
        rl.acquire("a", 500, 0.0).unwrap();
        let Err(CoreError::RateLimited { retry_after_s, .. }) = rl.acquire("a", 200, 0.0) else {
            panic!("expected a rate limit");
        };
        assert!((retry_after_s - 10.0).abs() < 1e-9);
        assert!(matches!(
            rl.acquire("a", 601, 0.0),
            Err(CoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(RateLimiter::new(Limits {
            requests_per_minute: Some(0),
            tokens_per_minute: None
        })
        .is_err());
    }
}
