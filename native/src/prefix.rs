//! `PrefixIndex`: the prefix cache's radix tree behind a lock, so any thread may use it.
//!
//! The GIL stays held: a lookup or an insert takes microseconds, less than giving the GIL
//! up and waiting to take it back would cost.

use std::sync::{Mutex, MutexGuard};

use modelkube_core::prefix;
use modelkube_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::errors::to_py;

/// Shared: token ids are copied out of Python before the lock is taken.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct PrefixIndex {
    inner: Mutex<prefix::PrefixIndex>,
}

impl PrefixIndex {
    fn index(&self) -> MutexGuard<'_, prefix::PrefixIndex> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Token ids as u32; an int out of that range is named with its position rather than
/// surfacing as a bare OverflowError.
fn token_ids(tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    tokens.extract::<Vec<u32>>().or_else(|err| {
        for (position, item) in tokens.try_iter()?.enumerate() {
            let item = item?;
            if item.is_instance_of::<PyInt>() && item.extract::<u32>().is_err() {
                return Err(to_py(CoreError::InvalidArgument(format!(
                    "token ids must be in 0..={}; got {} at position {position}",
                    u32::MAX,
                    item.str()?
                ))));
            }
        }
        Err(err)
    })
}

#[pymethods]
impl PrefixIndex {
    #[new]
    #[pyo3(signature = (max_bytes, max_entries = 2_147_483_648))]
    fn new(max_bytes: u64, max_entries: usize) -> PyResult<Self> {
        Ok(Self {
            inner: Mutex::new(prefix::PrefixIndex::new(max_bytes, max_entries).map_err(to_py)?),
        })
    }

    /// Stores `handle` under `tokens`; returns the handles that left the index (replaced,
    /// then evicted least recently used first), whose caches the caller drops.
    fn insert(&self, tokens: &Bound<'_, PyAny>, handle: u64, nbytes: u64) -> PyResult<Vec<u64>> {
        let tokens = token_ids(tokens)?;
        self.index().insert(&tokens, handle, nbytes).map_err(to_py)
    }

    /// (handle, length) of the longest stored prefix of `tokens`, or None.
    fn longest_prefix(&self, tokens: &Bound<'_, PyAny>) -> PyResult<Option<(u64, usize)>> {
        let tokens = token_ids(tokens)?;
        Ok(self.index().longest_prefix(&tokens))
    }

    /// (handle, shared length) of the entry sharing the most leading tokens with `tokens`,
    /// which may be longer than `tokens`; None if no entry shares any.
    fn longest_common(&self, tokens: &Bound<'_, PyAny>) -> PyResult<Option<(u64, usize)>> {
        let tokens = token_ids(tokens)?;
        Ok(self.index().longest_common(&tokens))
    }

    /// Takes out the entries that are proper prefixes of `tokens`; returns their handles.
    fn remove_prefixes(&self, tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
        let tokens = token_ids(tokens)?;
        Ok(self.index().remove_prefixes(&tokens))
    }

    fn remove(&self, handle: u64) -> bool {
        self.index().remove(handle)
    }

    fn __len__(&self) -> usize {
        self.index().len()
    }

    #[getter]
    fn bytes(&self) -> u64 {
        self.index().bytes()
    }
}
