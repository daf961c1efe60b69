//! `Vocabulary` and `OutputPath`: the engine thread's one call per step.

use std::sync::Arc;

use modelkube_core::chunks::Endpoint;
use modelkube_core::detok;
use modelkube_core::output::{self, Finish, RequestSpec, StepInput};
use modelkube_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;
use crate::gil::without_gil;

/// One step's report for one request:
/// (handle, text, frame, finish_reason, completion_tokens, tokens since the last report).
type StepRow<'py> = (
    u64,
    String,
    Option<Bound<'py, PyBytes>>,
    Option<&'static str>,
    u64,
    u64,
);

#[pyclass(frozen, module = "modelkube_native._native")]
pub struct Vocabulary {
    inner: Arc<detok::Vocabulary>,
}

#[pymethods]
impl Vocabulary {
    #[new]
    fn new(py: Python<'_>, path: &str) -> PyResult<Self> {
        let inner = without_gil(py, || detok::Vocabulary::from_file(path)).map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn size(&self) -> usize {
        self.inner.size()
    }

    #[pyo3(signature = (ids, strict = false))]
    fn decode(&self, ids: Vec<i64>, strict: bool) -> PyResult<String> {
        let mut checked = Vec::with_capacity(ids.len());
        for id in ids {
            if !self.inner.contains(id) {
                return Err(to_py(CoreError::TokenId {
                    request: "decode".into(),
                    token: id,
                    vocab_size: self.inner.size(),
                }));
            }
            checked.push(id as u32);
        }
        self.inner.decode(&checked, strict).map_err(to_py)
    }
}

#[pyclass(frozen, module = "modelkube_native._native")]
pub struct OutputPath {
    inner: output::OutputPath,
}

fn finish_of(reason: Option<&str>) -> PyResult<Option<Finish>> {
    match reason {
        None => Ok(None),
        Some("stop") => Ok(Some(Finish::Stop)),
        Some("length") => Ok(Some(Finish::Length)),
        Some(other) => Err(to_py(CoreError::InvalidArgument(format!(
            "finish reason must be 'stop' or 'length', not {other:?}"
        )))),
    }
}

#[pymethods]
impl OutputPath {
    #[new]
    #[pyo3(signature = (vocabulary, model, strict_utf8 = false))]
    fn new(vocabulary: &Vocabulary, model: String, strict_utf8: bool) -> Self {
        Self {
            inner: output::OutputPath::new(Arc::clone(&vocabulary.inner), model, strict_utf8),
        }
    }

    // Keyword arguments from Python: the bools are named at every call site.
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    #[pyo3(signature = (
        handle, request_id, *, chat, stream, created, frames = true, include_usage = false,
        stops = Vec::new(), prompt_tokens = 0, cached_tokens = 0
    ))]
    fn add(
        &self,
        handle: u64,
        request_id: String,
        chat: bool,
        stream: bool,
        created: i64,
        frames: bool,
        include_usage: bool,
        stops: Vec<String>,
        prompt_tokens: u64,
        cached_tokens: u64,
    ) -> PyResult<()> {
        let spec = RequestSpec {
            request_id,
            endpoint: if chat { Endpoint::Chat } else { Endpoint::Text },
            created,
            stream,
            frames,
            include_usage,
            stops,
            prompt_tokens,
            cached_tokens,
        };
        self.inner.add(handle, spec).map_err(to_py)
    }

    fn discard(&self, handle: u64) -> PyResult<()> {
        self.inner.discard(handle).map_err(to_py)
    }

    /// One engine step: `(handle, token or None, finish reason or None)` per request.
    fn step<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<(u64, Option<i64>, Option<String>)>,
    ) -> PyResult<Vec<StepRow<'py>>> {
        let mut parsed = Vec::with_capacity(inputs.len());
        for (handle, token, finish) in inputs {
            parsed.push(StepInput {
                handle,
                token,
                finish: finish_of(finish.as_deref())?,
            });
        }
        let outputs = without_gil(py, || self.inner.step(&parsed)).map_err(to_py)?;
        Ok(outputs
            .into_iter()
            .map(|o| {
                let frame = o.frame.map(|f| PyBytes::new(py, &f));
                let finish = o.finish.map(Finish::as_str);
                (
                    o.handle,
                    o.text,
                    frame,
                    finish,
                    o.completion_tokens,
                    o.tokens,
                )
            })
            .collect())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}
