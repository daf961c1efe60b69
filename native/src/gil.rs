//! The one place the GIL is released: around work that touches no Python object.

use pyo3::Python;

pub fn without_gil<T, F>(py: Python<'_>, work: F) -> T
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    py.detach(work)
}
