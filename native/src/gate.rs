//! `Gate`: one holder at a time, handed from thread to thread in the order they asked.
//!
//! The second layer of the gateway's Rust front (issue 19, after `front.rs`): `HttpFront`
//! asks its router on a tokio thread while the gateway's event loop changes the same state
//! (pod loads, admission, the catalog) on its own thread. The GIL does not keep them apart: it
//! may pass from the loop's thread to the router in the middle of any of the loop's callbacks.
//! The loop holds the gate while it runs callbacks and lets it go only while it waits in its
//! selector (`modelkube_serving.gated_loop`); the router is called holding it. So the router
//! runs between two of the loop's turns, as if it were one of its callbacks, and a router
//! called while the loop is idle does not wait for the loop to wake.
//!
//! Handed over, not released: a holder leaving while others wait gives the gate to the first
//! of them, so a busy loop, which takes it back after every turn, cannot starve the router.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;

use crate::gil::without_gil;

#[derive(Default)]
struct State {
    held: bool,
    /// Tickets of the threads waiting, first come first; `next` is handed the gate.
    waiting: VecDeque<u64>,
    handed: Option<u64>,
    tickets: u64,
}

/// Shared: its state sits behind its own lock, never held while calling into Python.
#[pyclass(frozen, module = "modelkube_native._native")]
#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
    turn: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until this thread holds the gate.
    pub(crate) fn enter(&self) {
        let mut state = self.lock();
        if !state.held {
            state.held = true;
            return;
        }
        let ticket = state.tickets;
        state.tickets += 1;
        state.waiting.push_back(ticket);
        while state.handed != Some(ticket) {
            state = self
                .turn
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.handed = None;
    }

    /// Gives the gate to the first waiter, or frees it.
    pub(crate) fn leave(&self) {
        let mut state = self.lock();
        match state.waiting.pop_front() {
            Some(next) => {
                state.handed = Some(next);
                drop(state);
                self.turn.notify_all();
            }
            None => state.held = false,
        }
    }
}

#[pymethods]
impl Gate {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Blocks, the GIL released, until the caller holds the gate.
    fn acquire(&self, py: Python<'_>) {
        without_gil(py, || self.enter());
    }

    /// Hands the gate to the next waiter; the caller must hold it.
    fn release(&self) {
        self.leave();
    }
}
