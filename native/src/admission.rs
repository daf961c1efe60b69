//! `Admission`: the scheduler behind a lock, so any thread may use it.

use std::sync::{Mutex, MutexGuard};

use modelkube_core::admission::{AdmissionConfig, Decision, Scheduler};
use modelkube_core::ratelimit::Limits;
use pyo3::prelude::*;

use crate::errors::to_py;

/// Shared: every call takes the one lock, so a grant and a release never interleave.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct Admission {
    inner: Mutex<Scheduler>,
}

impl Admission {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl Admission {
    #[new]
    #[pyo3(signature = (
        max_running, max_queued, *, quantum = 512, requests_per_minute = None,
        tokens_per_minute = None
    ))]
    fn new(
        max_running: usize,
        max_queued: usize,
        quantum: u64,
        requests_per_minute: Option<u64>,
        tokens_per_minute: Option<u64>,
    ) -> PyResult<Self> {
        let config = AdmissionConfig {
            max_running,
            max_queued,
            quantum,
            limits: Limits {
                requests_per_minute,
                tokens_per_minute,
            },
        };
        Ok(Self {
            inner: Mutex::new(Scheduler::new(config).map_err(to_py)?),
        })
    }

    /// True: admitted now; False: queued until a `release` hands it the slot.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (ticket, key, priority, cost, deadline, now))]
    fn submit(
        &self,
        ticket: u64,
        key: &str,
        priority: i64,
        cost: u64,
        deadline: f64,
        now: f64,
    ) -> PyResult<bool> {
        let decision = self
            .scheduler()
            .submit(ticket, key, priority, cost, deadline, now)
            .map_err(to_py)?;
        Ok(decision == Decision::Admitted)
    }

    fn cancel(&self, ticket: u64) -> bool {
        self.scheduler().cancel(ticket)
    }

    /// A running request ended: (the ticket its slot goes to, the tickets that expired).
    fn release(&self, now: f64) -> PyResult<(Option<u64>, Vec<u64>)> {
        let released = self.scheduler().release(now).map_err(to_py)?;
        Ok((released.next, released.expired))
    }

    /// The queued tickets whose deadline has passed, removed: the scheduler alone decides who
    /// expired; the runtime calls this from a timer set at a waiter's deadline.
    fn expire(&self, now: f64) -> Vec<u64> {
        self.scheduler().expire(now)
    }

    #[getter]
    fn running(&self) -> usize {
        self.scheduler().running()
    }

    #[getter]
    fn queued(&self) -> usize {
        self.scheduler().queued()
    }
}
