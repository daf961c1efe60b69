//! A circuit breaker: after enough failures in a row the upstream gets a rest, then one probe.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Time comes in as an argument, so the state machine is pure and tested without sleeping.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    failures_to_open: u32,
    cooldown: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
    opened_total: u64,
}

impl CircuitBreaker {
    /// `failures_to_open` 0 turns the breaker off.
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Self {
            failures_to_open,
            cooldown,
            failures: 0,
            opened_at: None,
            probing: false,
            opened_total: 0,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(at) if now.duration_since(at) < self.cooldown => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a call go out now? `Err(wait)` while open; in half-open only one probe at a time.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let at = self.opened_at.unwrap_or(now);
                Err(self.cooldown.saturating_sub(now.duration_since(at)))
            }
            BreakerState::HalfOpen if self.probing => Err(Duration::from_millis(100)),
            BreakerState::HalfOpen => {
                self.probing = true;
                Ok(())
            }
        }
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.probing = false;
    }

    /// `probe`: this call was the half-open probe. Under parallel callers, calls let out while
    /// the breaker was closed still finish after it opened; only the probe's own outcome may
    /// reopen it or free the probe slot, or a late 429 would let a second probe out.
    pub fn on_failure(&mut self, now: Instant, probe: bool) {
        if self.failures_to_open == 0 {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if probe || (self.opened_at.is_none() && self.failures >= self.failures_to_open) {
            self.opened_at = Some(now);
            self.opened_total += 1;
        }
        if probe {
            self.probing = false;
        }
    }

    /// A call that ended neither way (a 429, a cancelled call): a probe gives its slot back.
    pub fn on_neutral(&mut self, probe: bool) {
        if probe {
            self.probing = false;
        }
    }

    pub fn opened_total(&self) -> u64 {
        self.opened_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(3, COOLDOWN);
        b.on_failure(t, false);
        b.on_failure(t, false);
        b.on_success();
        b.on_failure(t, false);
        b.on_failure(t, false);
        assert_eq!(b.state(t), BreakerState::Closed);
        b.on_failure(t, false);
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(
            b.admit(t + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(b.opened_total(), 1);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_result_decides() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(1, COOLDOWN);
        b.on_failure(t, false);
        let later = t + COOLDOWN;
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(later), Ok(()));
        assert!(b.admit(later).is_err(), "a second probe waits");
        b.on_failure(later, true);
        assert_eq!(
            b.state(later),
            BreakerState::Open,
            "a failed probe opens it again"
        );
        let again = later + COOLDOWN;
        assert_eq!(b.admit(again), Ok(()));
        b.on_success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert_eq!(b.opened_total(), 2);
    }

    #[test]
    fn a_neutral_probe_frees_the_slot() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(1, COOLDOWN);
        b.on_failure(t, false);
        let later = t + COOLDOWN;
        assert_eq!(b.admit(later), Ok(()));
        b.on_neutral(true);
        assert_eq!(b.admit(later), Ok(()));
    }

    #[test]
    fn late_outcomes_of_calls_let_out_before_opening_leave_the_probe_alone() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(1, COOLDOWN);
        b.on_failure(t, false);
        let later = t + COOLDOWN;
        assert_eq!(b.admit(later), Ok(()));
        b.on_neutral(false);
        assert!(
            b.admit(later).is_err(),
            "a late 429 does not free the probe slot"
        );
        b.on_failure(later, false);
        assert!(
            b.admit(later).is_err(),
            "a late failure does not end the probe"
        );
        assert_eq!(b.opened_total(), 1);
        b.on_neutral(true);
        assert_eq!(b.admit(later), Ok(()), "the probe's own outcome does");
    }

    #[test]
    fn zero_failures_to_open_never_opens() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(0, COOLDOWN);
        for _ in 0..100 {
            b.on_failure(t, false);
        }
        assert_eq!(b.admit(t), Ok(()));
    }
}
