//! `Vocabulary`, `RenderSpec` and `OutputPath`: the engine thread's one call per step, and
//! every byte of a completion's response.

use std::sync::Arc;

use modelkube_core::detok;
use modelkube_core::output::{self, Logprobs, RequestSpec, StepInput};
use modelkube_core::render::{self, Endpoint, ErrorBody, Finish, Renderer, Usage};
use modelkube_core::toolcalls::ToolSyntax;
use modelkube_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;
use crate::gil::without_gil;

/// Why a completion ended: OpenAI's `finish_reason`.
#[pyclass(
    eq,
    frozen,
    from_py_object,
    module = "modelkube_native._native",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

impl From<FinishReason> for Finish {
    fn from(reason: FinishReason) -> Self {
        match reason {
            FinishReason::Stop => Finish::Stop,
            FinishReason::Length => Finish::Length,
            FinishReason::ToolCalls => Finish::ToolCalls,
        }
    }
}

impl From<Finish> for FinishReason {
    fn from(finish: Finish) -> Self {
        match finish {
            Finish::Stop => FinishReason::Stop,
            Finish::Length => FinishReason::Length,
            Finish::ToolCalls => FinishReason::ToolCalls,
        }
    }
}

/// Shared: immutable once loaded.
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

    #[pyo3(signature = (ids, strict = false, skip_special_tokens = true))]
    fn decode(&self, ids: Vec<i64>, strict: bool, skip_special_tokens: bool) -> PyResult<String> {
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
        self.inner
            .decode(&checked, strict, skip_special_tokens)
            .map_err(to_py)
    }
}

/// How one request's response is rendered, decided by the service from the request.
/// Shared: immutable; requests hold it by `Arc`.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct RenderSpec {
    inner: Arc<Renderer>,
}

#[pymethods]
impl RenderSpec {
    // Keyword arguments from Python: the bools are named at every call site.
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    #[new]
    #[pyo3(signature = (
        request_id, model, *, chat, stream, created, include_usage = false, logprobs = false,
        top_logprobs = 0, choices = 1, tools = false
    ))]
    fn new(
        request_id: String,
        model: String,
        chat: bool,
        stream: bool,
        created: i64,
        include_usage: bool,
        logprobs: bool,
        top_logprobs: usize,
        choices: u32,
        tools: bool,
    ) -> PyResult<Self> {
        if choices == 0 {
            return Err(to_py(CoreError::InvalidArgument(
                "a response has at least one choice".into(),
            )));
        }
        let spec = render::RenderSpec {
            request_id,
            model,
            endpoint: if chat { Endpoint::Chat } else { Endpoint::Text },
            stream,
            include_usage,
            created,
            logprobs,
            top_logprobs,
            index: 0,
            choices,
            tools: (tools && chat).then_some(ToolSyntax::Hermes),
        };
        Ok(Self {
            inner: Arc::new(Renderer::new(spec)),
        })
    }

    #[getter]
    fn index(&self) -> u32 {
        self.inner.spec().index
    }

    #[getter]
    fn choices(&self) -> u32 {
        self.inner.spec().choices
    }

    /// The same response's choice `index` (0 <= index < choices).
    fn for_choice(&self, index: u32) -> PyResult<Self> {
        let spec = self.inner.spec();
        if index >= spec.choices {
            return Err(to_py(CoreError::InvalidArgument(format!(
                "choice {index} of a response of {} choices",
                spec.choices
            ))));
        }
        Ok(Self {
            inner: Arc::new(Renderer::new(spec.for_choice(index))),
        })
    }

    /// The end of a stream of several choices: the usage chunk (when asked for), `[DONE]`.
    fn close<'py>(
        &self,
        py: Python<'py>,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_tokens: u64,
    ) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(256);
        let usage = Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        };
        self.inner.close(usage, &mut out);
        PyBytes::new(py, &out)
    }

    /// The body of a response of several choices, from each choice's object in index order.
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts the list as an owned Vec
    fn join<'py>(
        &self,
        py: Python<'py>,
        choices: Vec<Vec<u8>>,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_tokens: u64,
    ) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(256 + choices.iter().map(Vec::len).sum::<usize>());
        let usage = Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        };
        self.inner.join(&choices, usage, &mut out);
        PyBytes::new(py, &out)
    }

    #[getter]
    fn request_id(&self) -> &str {
        &self.inner.spec().request_id
    }

    #[getter]
    fn stream(&self) -> bool {
        self.inner.spec().stream
    }

    /// The frames a stream opens with: the role chunk of a chat completion, none for text.
    fn start<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(192);
        self.inner.start(&mut out);
        PyBytes::new(py, &out)
    }
}

/// An error in the middle of a stream: an OpenAI error body as an SSE data frame.
#[pyfunction]
#[pyo3(signature = (message, error_type, *, param = None, code = None))]
pub fn error_frame<'py>(
    py: Python<'py>,
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(128 + message.len());
    let body = ErrorBody {
        message,
        kind: error_type,
        param,
        code,
    };
    Renderer::error(body, &mut out);
    PyBytes::new(py, &out)
}

/// One request's report after a step.
/// Shared: immutable (`Py<PyBytes>` is `Sync`).
#[pyclass(frozen, get_all, module = "modelkube_native._native")]
pub struct StepResult {
    handle: u64,
    /// Streaming: the new text. Not streaming: empty until it finishes, then all of it.
    text: String,
    /// The bytes to write: SSE chunks when streaming, the JSON body at the finish otherwise.
    data: Option<Py<PyBytes>>,
    finish: Option<FinishReason>,
    completion_tokens: u64,
    /// Tokens since the request last reported.
    tokens: u64,
}

/// The output path's reports as Python objects.
pub(crate) fn step_results(py: Python<'_>, outputs: Vec<output::StepOutput>) -> Vec<StepResult> {
    outputs
        .into_iter()
        .map(|o| StepResult {
            handle: o.handle,
            text: o.text,
            data: o.data.map(|d| PyBytes::new(py, &d).unbind()),
            finish: o.finish.map(FinishReason::from),
            completion_tokens: o.completion_tokens,
            tokens: o.tokens,
        })
        .collect()
}

/// One request's input to a step: (handle, token or None, finish or None,
/// (logprob, top ids, top logprobs) or None).
type StepRow = (
    u64,
    Option<i64>,
    Option<FinishReason>,
    Option<(f64, Vec<u32>, Vec<f64>)>,
);

/// Shared: the core's request table sits behind one lock (`output::OutputPath`), taken for
/// each whole step, so a step sees every request's state from one instant.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct OutputPath {
    pub(crate) inner: output::OutputPath,
}

#[pymethods]
impl OutputPath {
    #[new]
    #[pyo3(signature = (vocabulary, strict_utf8 = false))]
    fn new(vocabulary: &Vocabulary, strict_utf8: bool) -> Self {
        Self {
            inner: output::OutputPath::new(Arc::clone(&vocabulary.inner), strict_utf8),
        }
    }

    #[pyo3(signature = (
        handle, render, *, stops = Vec::new(), prompt_tokens = 0, cached_tokens = 0,
        skip_special_tokens = true
    ))]
    fn add(
        &self,
        handle: u64,
        render: &RenderSpec,
        stops: Vec<String>,
        prompt_tokens: u64,
        cached_tokens: u64,
        skip_special_tokens: bool,
    ) -> PyResult<()> {
        let spec = RequestSpec {
            render: Arc::clone(&render.inner),
            stops,
            prompt_tokens,
            cached_tokens,
            skip_special_tokens,
        };
        self.inner.add(handle, spec).map_err(to_py)
    }

    fn discard(&self, handle: u64) -> PyResult<()> {
        self.inner.discard(handle).map_err(to_py)
    }

    /// One engine step for the whole batch; a result for each request with news.
    fn step(&self, py: Python<'_>, inputs: Vec<StepRow>) -> PyResult<Vec<StepResult>> {
        let mut parsed = Vec::with_capacity(inputs.len());
        for (handle, token, finish, logprobs) in inputs {
            let logprobs = match logprobs {
                None => None,
                Some((logprob, ids, values)) => {
                    if ids.len() != values.len() {
                        return Err(to_py(CoreError::InvalidArgument(format!(
                            "{} top logprob ids but {} values",
                            ids.len(),
                            values.len()
                        ))));
                    }
                    let top = ids.into_iter().zip(values).collect();
                    Some(Logprobs { logprob, top })
                }
            };
            parsed.push(StepInput {
                handle,
                token,
                finish: finish.map(Finish::from),
                logprobs,
            });
        }
        let outputs = without_gil(py, || self.inner.step(&parsed)).map_err(to_py)?;
        Ok(step_results(py, outputs))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}
