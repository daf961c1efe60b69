//! `GrammarCompiler`, `Grammar` and `GrammarMatcher`: constrained decoding for
//! `response_format`. Compiling and each step's mask run without the GIL.

use std::sync::{Arc, Mutex, MutexGuard};

use modelkube_core::grammar::{self, GrammarSource};
use modelkube_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py;
use crate::gil::without_gil;

/// One model's grammar compiler, with its cache of compiled grammars by schema text.
/// Shared: the cache sits behind a lock in the core; compiling runs outside it.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct GrammarCompiler {
    inner: Arc<grammar::GrammarCompiler>,
}

#[pymethods]
impl GrammarCompiler {
    #[new]
    #[allow(clippy::needless_pass_by_value)] // pyo3 extracts a list into an owned Vec
    fn new(py: Python<'_>, path: &str, eos_tokens: Vec<u32>, vocab_size: usize) -> PyResult<Self> {
        let inner = without_gil(py, || {
            let json = std::fs::read_to_string(path).map_err(|e| CoreError::TokenizerFile {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
            grammar::GrammarCompiler::new(&json, &eos_tokens, vocab_size)
        })
        .map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn cached(&self) -> usize {
        self.inner.cached()
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    fn json_object(&self, py: Python<'_>) -> PyResult<Grammar> {
        self.compile(py, &GrammarSource::JsonObject)
    }

    /// Output matching the JSON schema `schema` (its JSON text).
    fn json_schema(&self, py: Python<'_>, schema: String) -> PyResult<Grammar> {
        self.compile(py, &GrammarSource::JsonSchema(schema))
    }

    /// Output matching the Lark grammar `grammar` (llguidance's dialect, `%json` included).
    fn lark(&self, py: Python<'_>, grammar: String) -> PyResult<Grammar> {
        self.compile(py, &GrammarSource::Lark(grammar))
    }
}

impl GrammarCompiler {
    fn compile(&self, py: Python<'_>, source: &GrammarSource) -> PyResult<Grammar> {
        let inner = without_gil(py, || self.inner.compile(source)).map_err(to_py)?;
        Ok(Grammar { inner })
    }
}

/// A compiled grammar; each request follows it with its own matcher.
/// Shared: immutable; new matchers are cloned from a template behind a lock in the core.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct Grammar {
    pub(crate) inner: Arc<grammar::CompiledGrammar>,
}

#[pymethods]
impl Grammar {
    /// How long compiling took, in microseconds.
    #[getter]
    fn compile_us(&self) -> u64 {
        self.inner.compile_us()
    }

    fn matcher(&self) -> GrammarMatcher {
        GrammarMatcher {
            inner: Mutex::new(self.inner.matcher()),
        }
    }
}

/// One request's position in its grammar.
/// Shared: behind a lock, though one request's matcher is used by one thread at a time.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct GrammarMatcher {
    inner: Mutex<grammar::GrammarMatcher>,
}

impl GrammarMatcher {
    fn lock(&self) -> MutexGuard<'_, grammar::GrammarMatcher> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl GrammarMatcher {
    /// The tokens allowed next: a bitset, token `i` at bit `i % 8` of byte `i / 8`
    /// (`numpy.unpackbits(..., bitorder="little")` unpacks it).
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let words = without_gil(py, || self.lock().mask()).map_err(to_py)?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Ok(PyBytes::new(py, &bytes))
    }

    /// Follow a sampled token; one the mask did not allow raises `GrammarError`.
    fn consume(&self, token: u32) -> PyResult<()> {
        self.lock().consume(token).map_err(to_py)
    }

    /// Whether the grammar is complete: only end-of-sequence may follow.
    #[getter]
    fn is_stopped(&self) -> bool {
        self.lock().is_stopped()
    }

    /// Whether the output so far is a complete match.
    fn is_accepting(&self) -> bool {
        self.lock().is_accepting()
    }
}
