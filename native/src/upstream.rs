//! `UpstreamClient`: the core's HTTP client for Python, blocking (the GIL released) or
//! awaitable on asyncio (the call runs on a tokio runtime; its end wakes the event loop).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use modelkube_core::upstream::UpstreamClient as CoreClient;
use modelkube_core::upstream::{Answer, BodyStream, ClientConfig, RetryPolicy};
use modelkube_core::CoreError;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_async_runtimes::tokio::get_runtime;
use tokio::sync::Mutex;

use crate::errors::to_py;
use crate::gil::without_gil;
use crate::loop_bridge::awaitable;

type Headers = Vec<(String, String)>;

/// The most bytes one iteration step hands over when several chunks are already waiting.
const BURST_LIMIT: usize = 64 << 10;

/// Shared: reqwest's pool is built for concurrent use; the breaker sits behind a lock and
/// the retry counter is atomic (`modelkube_core::upstream`).
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct UpstreamClient {
    inner: Arc<CoreClient>,
}

impl UpstreamClient {
    pub(crate) fn core(&self) -> Arc<CoreClient> {
        Arc::clone(&self.inner)
    }
}

#[pymethods]
impl UpstreamClient {
    #[new]
    #[pyo3(signature = (
        base_url,
        *,
        headers = None,
        connect_timeout_s = 5.0,
        response_timeout_s = 60.0,
        read_timeout_s = 300.0,
        max_retries = 2,
        backoff_base_s = 0.1,
        backoff_max_s = 5.0,
        breaker_failures = 5,
        breaker_cooldown_s = 10.0,
        pool_max_idle_per_host = 64,
        ca_file = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        base_url: &str,
        headers: Option<Headers>,
        connect_timeout_s: f64,
        response_timeout_s: f64,
        read_timeout_s: f64,
        max_retries: u32,
        backoff_base_s: f64,
        backoff_max_s: f64,
        breaker_failures: u32,
        breaker_cooldown_s: f64,
        pool_max_idle_per_host: usize,
        ca_file: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let mut config = ClientConfig::new(base_url);
        config.headers = headers.unwrap_or_default();
        config.connect_timeout = seconds("connect_timeout_s", connect_timeout_s)?;
        config.response_timeout = seconds("response_timeout_s", response_timeout_s)?;
        config.read_timeout = seconds("read_timeout_s", read_timeout_s)?;
        config.retry = RetryPolicy {
            max_retries,
            backoff_base: seconds("backoff_base_s", backoff_base_s)?,
            backoff_max: seconds("backoff_max_s", backoff_max_s)?,
        };
        config.breaker_failures = breaker_failures;
        config.breaker_cooldown = seconds("breaker_cooldown_s", breaker_cooldown_s)?;
        config.pool_max_idle_per_host = pool_max_idle_per_host;
        if let Some(path) = ca_file {
            let pem = std::fs::read(&path).map_err(|err| {
                to_py(CoreError::InvalidArgument(format!(
                    "cannot read the CA file {}: {err}",
                    path.display()
                )))
            })?;
            config.extra_roots_pem = Some(pem);
        }
        // reqwest's client needs a runtime to exist while it is built.
        let _guard = get_runtime().enter();
        let inner = CoreClient::new(config).map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }

    /// "closed", "open" or "half_open".
    #[getter]
    fn breaker_state(&self) -> &'static str {
        self.inner.breaker_state().as_str()
    }

    /// `(retries, breaker_opened)` since the client was created.
    fn counters(&self) -> (u64, u64) {
        self.inner.counters()
    }

    /// Send and read the whole answer, blocking this thread (not the others: no GIL held).
    #[pyo3(signature = (method, path, body = None, headers = None))]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        headers: Option<Headers>,
    ) -> PyResult<UpstreamResponse> {
        let inner = Arc::clone(&self.inner);
        let (method, path) = (method.to_owned(), path.to_owned());
        without_gil(py, move || {
            get_runtime().block_on(whole(inner, method, path, body, headers))
        })
        .map_err(to_py)
    }

    /// `request` for asyncio: an awaitable of the `UpstreamResponse`.
    #[pyo3(signature = (method, path, body = None, headers = None))]
    fn arequest<'py>(
        &self,
        py: Python<'py>,
        method: String,
        path: String,
        body: Option<Bytes>,
        headers: Option<Headers>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        awaitable(
            py,
            whole(inner, method, path, body, headers),
            |py, answer| Ok(Py::new(py, answer.map_err(to_py)?)?.into_any()),
        )
    }

    /// Send and wait for the headers; iterate the result for the body's chunks.
    #[pyo3(signature = (method, path, body = None, headers = None))]
    fn stream(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        body: Option<Bytes>,
        headers: Option<Headers>,
    ) -> PyResult<UpstreamStream> {
        let inner = Arc::clone(&self.inner);
        let (method, path) = (method.to_owned(), path.to_owned());
        let answer = without_gil(py, move || {
            get_runtime().block_on(send(inner, method, path, body, headers))
        })
        .map_err(to_py)?;
        Ok(UpstreamStream::from(answer))
    }

    /// `stream` for asyncio: an awaitable of the `UpstreamStream`, to `async for` over.
    #[pyo3(signature = (method, path, body = None, headers = None))]
    fn astream<'py>(
        &self,
        py: Python<'py>,
        method: String,
        path: String,
        body: Option<Bytes>,
        headers: Option<Headers>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        awaitable(
            py,
            send(inner, method, path, body, headers),
            |py, answer| Ok(Py::new(py, UpstreamStream::from(answer.map_err(to_py)?))?.into_any()),
        )
    }
}

async fn send(
    client: Arc<CoreClient>,
    method: String,
    path: String,
    body: Option<Bytes>,
    headers: Option<Headers>,
) -> Result<Answer, CoreError> {
    let headers = headers.unwrap_or_default();
    client
        .send(&method, &path, body.unwrap_or_default(), &headers)
        .await
}

async fn whole(
    client: Arc<CoreClient>,
    method: String,
    path: String,
    body: Option<Bytes>,
    headers: Option<Headers>,
) -> Result<UpstreamResponse, CoreError> {
    let mut answer = send(client, method, path, body, headers).await?;
    let body = answer.body.read_all().await?;
    Ok(UpstreamResponse {
        status: answer.status,
        headers: answer.headers,
        attempts: answer.attempts,
        body,
    })
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            to_py(CoreError::InvalidArgument(format!(
                "{name} must be > 0, not {value}"
            )))
        })
}

fn header_dict<'py>(py: Python<'py>, headers: &Headers) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (name, value) in headers {
        match dict.get_item(name)? {
            // Repeated headers fold into one, as RFC 9110 allows for list-valued ones.
            Some(prev) => dict.set_item(name, format!("{}, {value}", prev.extract::<String>()?))?,
            None => dict.set_item(name, value)?,
        }
    }
    Ok(dict)
}

/// A whole answer: status, headers (lower-case names) and body.
/// Shared: immutable.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct UpstreamResponse {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    attempts: u32,
    headers: Headers,
    body: Bytes,
}

#[pymethods]
impl UpstreamResponse {
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        header_dict(py, &self.headers)
    }

    #[getter]
    fn body(&self) -> Bytes {
        self.body.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "<UpstreamResponse {} ({} bytes)>",
            self.status,
            self.body.len()
        )
    }
}

/// An answer whose body arrives chunk by chunk: `for` or `async for` over it.
/// Shared: the body sits behind an async lock, so two threads iterating one stream take
/// chunks in turn and no chunk is read twice or lost.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct UpstreamStream {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    attempts: u32,
    headers: Headers,
    body: Arc<Mutex<BodyStream>>,
}

impl From<Answer> for UpstreamStream {
    fn from(answer: Answer) -> Self {
        Self {
            status: answer.status,
            attempts: answer.attempts,
            headers: answer.headers,
            body: Arc::new(Mutex::new(answer.body)),
        }
    }
}

#[pymethods]
impl UpstreamStream {
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        header_dict(py, &self.headers)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Bytes>> {
        let body = Arc::clone(&self.body);
        without_gil(py, move || {
            get_runtime().block_on(async move { body.lock().await.next_burst(BURST_LIMIT).await })
        })
        .map_err(to_py)
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let body = Arc::clone(&self.body);
        let next = async move { body.lock().await.next_burst(BURST_LIMIT).await };
        awaitable(py, next, |py, chunk| match chunk {
            Ok(Some(chunk)) => Ok(PyBytes::new(py, &chunk).into_any().unbind()),
            Ok(None) => Err(PyStopAsyncIteration::new_err(())),
            Err(err) => Err(to_py(err)),
        })
    }

    /// Stop reading; the connection is dropped, not pooled. Safe to call more than once, and
    /// never blocks: a read still in flight finishes closing on the runtime.
    fn close(&self) {
        if let Ok(mut body) = self.body.try_lock() {
            body.close();
            return;
        }
        let body = Arc::clone(&self.body);
        get_runtime().spawn(async move { body.lock().await.close() });
    }
}
