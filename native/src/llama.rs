//! `LlamaEngine`: llama.cpp's decode loop and the output path in one call per step, with the
//! GIL released for all of it.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use modelkube_core::grammar::GrammarMatcher;
use modelkube_core::output::{Logprobs, StepInput};
use modelkube_core::render::Finish as RenderFinish;
use modelkube_llama::{
    Choice, Constraint, Emitted, Finish, LlamaError, Request, Sampling, Settings,
};
use pyo3::prelude::*;
use pyo3::{import_exception, PyErr};

use crate::errors::{to_py, DuplicateRequestError, InvalidArgumentError};
use crate::gil::without_gil;
use crate::grammar::Grammar;
use crate::output::{step_results, OutputPath, StepResult};

import_exception!(modelkube_native.errors, LlamaLoadError);
import_exception!(modelkube_native.errors, LlamaDecodeError);

#[allow(clippy::needless_pass_by_value)] // `map_err(llama_to_py)` hands the error over by value
fn llama_to_py(err: LlamaError) -> PyErr {
    let message = err.to_string();
    match err {
        LlamaError::Load(_) | LlamaError::Context(_) | LlamaError::Adapter(_) => {
            LlamaLoadError::new_err(message)
        }
        LlamaError::Decode(_) => LlamaDecodeError::new_err(message),
        LlamaError::Duplicate(_) => DuplicateRequestError::new_err(message),
        LlamaError::Busy(_)
        | LlamaError::EmptyPrompt
        | LlamaError::TokenId { .. }
        | LlamaError::TooLong { .. }
        | LlamaError::UnknownAdapter(_) => InvalidArgumentError::new_err(message),
    }
}

/// The core's grammar matcher, as the llama.cpp engine's constraint: the same masks as MLX's.
struct Matcher(GrammarMatcher);

impl Constraint for Matcher {
    fn allowed(&mut self) -> Result<Vec<u32>, String> {
        self.0.mask().map_err(|e| e.to_string())
    }

    fn consume(&mut self, token: u32) -> Result<(), String> {
        self.0.consume(token).map_err(|e| e.to_string())
    }

    fn is_stopped(&self) -> bool {
        self.0.is_stopped()
    }
}

fn step_input(e: &Emitted) -> StepInput {
    StepInput {
        handle: e.handle,
        token: e.token.map(i64::from),
        finish: e.finish.map(|f| match f {
            Finish::Stop => RenderFinish::Stop,
            Finish::Length => RenderFinish::Length,
        }),
        logprobs: e.logprobs.as_ref().map(|l| Logprobs {
            logprob: f64::from(l.logprob),
            top: l.top.iter().map(|&(id, lp)| (id, f64::from(lp))).collect(),
        }),
    }
}

#[pyclass(frozen, module = "modelkube_native._native")]
pub struct LlamaEngine {
    inner: Mutex<modelkube_llama::LlamaEngine>,
    vocab_size: u32,
    context_length: u32,
    context_length_trained: u32,
    /// KV cells in use as of the last call, so a metrics scrape reads it without waiting
    /// for a step to release the engine.
    cells_used: AtomicUsize,
    cells_total: usize,
}

/// The locked engine; on release it publishes the cells in use.
struct Locked<'a> {
    guard: MutexGuard<'a, modelkube_llama::LlamaEngine>,
    cells_used: &'a AtomicUsize,
}

impl Deref for Locked<'_> {
    type Target = modelkube_llama::LlamaEngine;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.cells_used
            .store(self.guard.cells_used(), Ordering::Relaxed);
    }
}

impl LlamaEngine {
    fn engine(&self) -> Locked<'_> {
        // A panic mid-step leaves no state worse than a failed step: keep serving.
        let guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Locked {
            guard,
            cells_used: &self.cells_used,
        }
    }
}

#[pymethods]
impl LlamaEngine {
    #[new]
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands over an owned path
    #[pyo3(signature = (path, *, context_length, n_batch = 512, n_seq_max = 16, n_threads = 1))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        context_length: u32,
        n_batch: u32,
        n_seq_max: u32,
        n_threads: i32,
    ) -> PyResult<Self> {
        let settings = Settings {
            n_ctx_seq: context_length,
            n_batch,
            n_seq_max,
            n_threads,
        };
        let engine = without_gil(py, || modelkube_llama::LlamaEngine::load(&path, settings))
            .map_err(llama_to_py)?;
        Ok(Self {
            vocab_size: engine.vocab_size(),
            context_length: engine.context_length(),
            context_length_trained: engine.context_length_trained(),
            cells_used: AtomicUsize::new(0),
            cells_total: engine.cells_total(),
            inner: Mutex::new(engine),
        })
    }

    #[getter]
    fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Tokens one request may hold (prompt and completion): its own KV cells.
    #[getter]
    fn context_length(&self) -> u32 {
        self.context_length
    }

    /// The context the model was trained with (from the GGUF metadata).
    #[getter]
    fn context_length_trained(&self) -> u32 {
        self.context_length_trained
    }

    /// Choices running (one per request of a single choice).
    #[getter]
    fn running(&self) -> usize {
        self.engine().running()
    }

    /// Sequences no request holds: a request of `n` choices starts only with `n` free.
    #[getter]
    fn free_sequences(&self) -> usize {
        self.engine().free_sequences()
    }

    /// Sequences in all (`n_seq_max`): the most choices one request may have.
    #[getter]
    fn sequences(&self) -> u32 {
        self.engine().sequences()
    }

    /// The KV cache's use, 0..1: cells holding tokens (running requests' and prefixes kept
    /// for reuse) over all cells. Never waits for a step: it is the count after the last call.
    #[getter]
    #[allow(clippy::cast_precision_loss)] // cell counts are far below 2^52
    fn kv_cache_usage(&self) -> f64 {
        self.cells_used.load(Ordering::Relaxed) as f64 / self.cells_total.max(1) as f64
    }

    /// Loads a GGUF LoRA file against the model; its id for `add` and `step`.
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands over an owned path
    fn load_adapter(&self, py: Python<'_>, path: PathBuf) -> PyResult<u32> {
        without_gil(py, || self.engine().load_adapter(&path)).map_err(llama_to_py)
    }

    /// Frees an adapter (ending its requests); false when it is not loaded.
    fn free_adapter(&self, adapter: u32) -> bool {
        self.engine().free_adapter(adapter)
    }

    /// Starts a request; how many of its prompt tokens were already in the KV cache.
    /// `logprobs` is the number of alternatives to report with each token's logprob (None:
    /// no logprobs); `grammar` constrains the output (a fresh matcher of it follows it).
    /// `adapter`: an id from `load_adapter`, or 0 (`modelkube_llama::BASE`) for the base; a
    /// literal, so that the signature Python sees shows it. `others`: the (handle, seed) of
    /// each further choice (OpenAI's `n`), all from one prefill of the prompt.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        handle, prompt, *, max_tokens, temperature = 1.0, top_p = 1.0, seed = None,
        ignore_eos = false, presence_penalty = 0.0, frequency_penalty = 0.0,
        logit_bias = Vec::new(), logprobs = None, grammar = None, adapter = 0,
        others = Vec::new()
    ))]
    fn add(
        &self,
        handle: u64,
        prompt: Vec<u32>,
        max_tokens: u32,
        temperature: f32,
        top_p: f32,
        seed: Option<u64>,
        ignore_eos: bool,
        presence_penalty: f32,
        frequency_penalty: f32,
        logit_bias: Vec<(u32, f32)>,
        logprobs: Option<u32>,
        grammar: Option<PyRef<'_, Grammar>>,
        adapter: u32,
        others: Vec<(u64, Option<u64>)>,
    ) -> PyResult<u32> {
        let finite = [temperature, presence_penalty, frequency_penalty]
            .iter()
            .chain(logit_bias.iter().map(|b| &b.1))
            .all(|v| v.is_finite());
        if !(finite && temperature >= 0.0 && top_p > 0.0 && top_p <= 1.0) {
            return Err(InvalidArgumentError::new_err(format!(
                "temperature {temperature}, top_p {top_p}, the penalties or a logit_bias are \
                 out of range"
            )));
        }
        // Each choice follows the grammar with a matcher of its own.
        let constraint = move || {
            grammar
                .as_ref()
                .map(|g| Box::new(Matcher(g.inner.matcher())) as Box<dyn Constraint>)
        };
        let others = others
            .into_iter()
            .map(|(handle, seed)| Choice {
                handle,
                seed,
                constraint: constraint(),
            })
            .collect();
        let request = Request {
            handle,
            prompt,
            max_tokens,
            sampling: Sampling {
                temperature,
                top_p,
                seed,
                presence_penalty,
                frequency_penalty,
                logit_bias,
                logprobs,
            },
            ignore_eos,
            constraint: constraint(),
            adapter,
        };
        self.engine()
            .add_choices(request, others)
            .map_err(llama_to_py)
    }

    /// Greedy token ids for one prompt with nothing else running: what llama.cpp's own
    /// server answers at temperature 0 (the parity test compares them).
    fn generate_greedy(
        &self,
        py: Python<'_>,
        prompt: Vec<u32>,
        max_tokens: u32,
    ) -> PyResult<Vec<u32>> {
        without_gil(py, || self.engine().generate_greedy(prompt, max_tokens)).map_err(llama_to_py)
    }

    /// Ends a request in llama.cpp (the output path is the caller's); false when not running.
    fn cancel(&self, handle: u64) -> bool {
        self.engine().cancel(handle)
    }

    /// Ends every request, or those of one adapter; their handles.
    #[pyo3(signature = (adapter = None))]
    fn clear(&self, adapter: Option<u32>) -> Vec<u64> {
        match adapter {
            None => self.engine().clear(),
            Some(adapter) => self.engine().clear_adapter(adapter),
        }
    }

    /// One decode over the running requests of `adapter` (0: the base), its tokens sampled
    /// and rendered by `output`. A request that a stop string ends there is ended in
    /// llama.cpp too.
    #[pyo3(signature = (output, adapter = 0))]
    fn step(&self, py: Python<'_>, output: &OutputPath, adapter: u32) -> PyResult<Vec<StepResult>> {
        let outputs = without_gil(py, || {
            let mut engine = self.engine();
            let emitted = engine.step_adapter(adapter).map_err(llama_to_py)?;
            let inputs: Vec<StepInput> = emitted.iter().map(step_input).collect();
            let outputs = output.inner.step(&inputs).map_err(to_py)?;
            for o in &outputs {
                if o.finish.is_some() {
                    engine.cancel(o.handle);
                }
            }
            Ok::<_, PyErr>(outputs)
        })?;
        Ok(step_results(py, outputs))
    }
}
