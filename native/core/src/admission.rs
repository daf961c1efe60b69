//! The bounded queue in front of the batch.
//!
//! Lower priority values go first (vLLM's convention). Within a priority, API keys take turns
//! by deficit round robin weighted by each request's token cost, so a key sending many or
//! large requests cannot starve the others. Queued requests carry a deadline and can be
//! cancelled; rate limits are checked before a request is queued.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use crate::error::{CoreError, CoreResult};
use crate::ratelimit::{Limits, RateLimiter};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionConfig {
    pub max_running: usize,
    pub max_queued: usize,
    /// Tokens of credit a key gets per round.
    pub quantum: u64,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    Queued,
}

#[derive(Debug, Default)]
struct Level {
    queues: HashMap<String, VecDeque<u64>>,
    turn: VecDeque<String>,
    deficit: HashMap<String, u64>,
}

/// Deadlines as ordered keys: f64 seconds compared by their bits (all finite, non-negative).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Deadline(f64);
impl Eq for Deadline {}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
pub struct Scheduler {
    config: AdmissionConfig,
    running: usize,
    levels: BTreeMap<i64, Level>,
    /// Queued tickets and their cost; an entry in a level's queue that is not here was
    /// cancelled or expired.
    queued: HashMap<u64, u64>,
    deadlines: BinaryHeap<Reverse<(Deadline, u64)>>,
    limiter: RateLimiter,
}

/// What freeing a slot did: the ticket it went to, and the tickets that expired meanwhile.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub next: Option<u64>,
    pub expired: Vec<u64>,
}

impl Scheduler {
    pub fn new(config: AdmissionConfig) -> CoreResult<Self> {
        if config.max_running == 0 || config.quantum == 0 {
            return Err(CoreError::InvalidArgument(
                "max_running and quantum must be at least 1".into(),
            ));
        }
        Ok(Self {
            limiter: RateLimiter::new(config.limits)?,
            config,
            running: 0,
            levels: BTreeMap::new(),
            queued: HashMap::new(),
            deadlines: BinaryHeap::new(),
        })
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// A new request: admitted at once, queued, or refused (queue full, rate limited).
    pub fn submit(
        &mut self,
        ticket: u64,
        key: &str,
        priority: i64,
        cost: u64,
        deadline: f64,
        now: f64,
    ) -> CoreResult<Decision> {
        if self.queued.contains_key(&ticket) {
            return Err(CoreError::DuplicateRequest(ticket.to_string()));
        }
        let free = self.running < self.config.max_running && self.queued.is_empty();
        if !free && self.queued.len() >= self.config.max_queued {
            return Err(CoreError::QueueFull {
                queued: self.queued.len(),
                limit: self.config.max_queued,
            });
        }
        self.limiter.acquire(key, cost, now)?;
        if free {
            self.running += 1;
            return Ok(Decision::Admitted);
        }
        let level = self.levels.entry(priority).or_default();
        let queue = level.queues.entry(key.to_string()).or_default();
        if queue.is_empty() && !level.turn.iter().any(|k| k == key) {
            level.turn.push_back(key.to_string());
        }
        queue.push_back(ticket);
        self.queued.insert(ticket, cost.max(1));
        self.deadlines.push(Reverse((Deadline(deadline), ticket)));
        Ok(Decision::Queued)
    }

    /// Takes a queued ticket out (the client went away); false if it is not queued.
    pub fn cancel(&mut self, ticket: u64) -> bool {
        self.queued.remove(&ticket).is_some()
    }

    /// A running request ended: its slot goes to the next ticket in line, if any.
    pub fn release(&mut self, now: f64) -> CoreResult<Released> {
        if self.running == 0 {
            return Err(CoreError::InvalidArgument(
                "release without a running request".into(),
            ));
        }
        let expired = self.expire(now);
        let next = self.pop();
        if next.is_none() {
            self.running -= 1;
        }
        Ok(Released { next, expired })
    }

    /// Removes and returns the queued tickets whose deadline has passed.
    pub fn expire(&mut self, now: f64) -> Vec<u64> {
        let mut expired = vec![];
        while let Some(Reverse((Deadline(at), ticket))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.queued.remove(&ticket).is_some() {
                expired.push(ticket);
            }
        }
        if self.queued.is_empty() {
            self.levels.clear();
            self.deadlines.clear();
        }
        expired
    }

    fn pop(&mut self) -> Option<u64> {
        let quantum = self.config.quantum;
        while let Some(mut entry) = self.levels.first_entry() {
            let level = entry.get_mut();
            if let Some(ticket) = pop_level(level, &mut self.queued, quantum) {
                return Some(ticket);
            }
            entry.remove();
        }
        None
    }
}

/// Deficit round robin over one priority's keys; None once the level holds no live ticket.
fn pop_level(level: &mut Level, queued: &mut HashMap<u64, u64>, quantum: u64) -> Option<u64> {
    while let Some(key) = level.turn.front().cloned() {
        let queue = level.queues.get_mut(&key)?;
        while queue.front().is_some_and(|t| !queued.contains_key(t)) {
            queue.pop_front();
        }
        let Some(&head) = queue.front() else {
            level.queues.remove(&key);
            level.deficit.remove(&key);
            level.turn.pop_front();
            continue;
        };
        let cost = queued[&head];
        let deficit = level.deficit.entry(key.clone()).or_insert(0);
        if *deficit >= cost {
            *deficit -= cost;
            queue.pop_front();
            queued.remove(&head);
            return Some(head);
        }
        // Not enough credit: this key gets its quantum and waits for its next turn.
        *deficit += quantum;
        level.turn.rotate_left(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(max_running: usize, max_queued: usize) -> Scheduler {
        Scheduler::new(AdmissionConfig {
            max_running,
            max_queued,
            quantum: 100,
            limits: Limits::default(),
        })
        .unwrap()
    }

    fn drain(s: &mut Scheduler) -> Vec<u64> {
        std::iter::from_fn(|| s.release(0.0).unwrap().next).collect()
    }

    #[test]
    fn admits_until_full_then_queues_then_refuses() {
        let mut s = scheduler(1, 1);
        assert_eq!(s.submit(1, "a", 0, 1, 10.0, 0.0), Ok(Decision::Admitted));
        assert_eq!(s.submit(2, "a", 0, 1, 10.0, 0.0), Ok(Decision::Queued));
        assert!(matches!(
            s.submit(3, "a", 0, 1, 10.0, 0.0),
            Err(CoreError::QueueFull { .. })
        ));
        assert_eq!(s.release(0.0).unwrap().next, Some(2));
        assert_eq!(s.release(0.0).unwrap().next, None);
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn heavy_key_does_not_starve_light_keys() {
        let mut s = scheduler(1, 100);
        s.submit(0, "x", 0, 1, 10.0, 0.0).unwrap();
        for t in 1..=10 {
            s.submit(t, "heavy", 0, 100, 10.0, 0.0).unwrap();
        }
        s.submit(11, "light", 0, 100, 10.0, 0.0).unwrap();
        s.submit(12, "light", 0, 100, 10.0, 0.0).unwrap();
        let order = drain(&mut s);
        let light_at: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > 10)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(light_at, vec![1, 3], "keys alternate: {order:?}");
    }

    #[test]
    fn lower_priority_value_goes_first() {
        let mut s = scheduler(1, 10);
        s.submit(0, "a", 0, 1, 10.0, 0.0).unwrap();
        s.submit(1, "a", 5, 1, 10.0, 0.0).unwrap();
        s.submit(2, "b", -1, 1, 10.0, 0.0).unwrap();
        s.submit(3, "a", 0, 1, 10.0, 0.0).unwrap();
        assert_eq!(drain(&mut s), vec![2, 3, 1]);
    }

    #[test]
    fn cancelled_and_expired_tickets_are_skipped() {
        let mut s = scheduler(1, 10);
        s.submit(0, "a", 0, 1, 10.0, 0.0).unwrap();
        s.submit(1, "a", 0, 1, 1.0, 0.0).unwrap();
        s.submit(2, "a", 0, 1, 10.0, 0.0).unwrap();
        s.submit(3, "a", 0, 1, 10.0, 0.0).unwrap();
        assert!(s.cancel(2));
        assert!(!s.cancel(2));
        let released = s.release(5.0).unwrap();
        assert_eq!(
            released,
            Released {
                next: Some(3),
                expired: vec![1]
            }
        );
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn rate_limited_requests_are_not_queued() {
        let mut s = Scheduler::new(AdmissionConfig {
            max_running: 1,
            max_queued: 10,
            quantum: 100,
            limits: Limits {
                requests_per_minute: Some(1),
                tokens_per_minute: None,
            },
        })
        .unwrap();
        s.submit(0, "a", 0, 1, 10.0, 0.0).unwrap();
        assert!(matches!(
            s.submit(1, "a", 0, 1, 10.0, 0.0),
            Err(CoreError::RateLimited { .. })
        ));
        assert_eq!(s.queued(), 0);
        assert!(s.release(0.0).is_ok());
        assert!(s.release(0.0).is_err());
    }
}
