//! One GGUF model, one llama.cpp context, and continuous batching over its sequences.
//!
//! Each request is a llama.cpp sequence. A step builds one `llama_batch` over every active
//! row (the next token of each decoding row first, then prompt chunks of prefilling rows up to
//! the batch size), decodes it once, and samples each row whose last position was computed.
//!
//! LoRA adapters load against the model and share its context: llama.cpp applies the adapters
//! set on the context to a whole decode (`llama_set_adapters_lora`), with no per-sequence
//! choice, so a step decodes the rows of one adapter (or of the base) only, and the caller
//! steps each adapter with running rows in turn.

// Token ids (< n_vocab, checked in `add`), positions (< n_ctx) and sequence ids (< n_seq_max)
// all fit llama.cpp's i32.
#![allow(clippy::cast_possible_wrap)]

use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;
use std::sync::Once;

use crate::ffi;
use crate::sample::{Sampler, Sampling};

#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("llama.cpp cannot load the model {0}")]
    Load(String),
    #[error("llama.cpp cannot create a context of {0} tokens")]
    Context(u32),
    #[error("all {0} sequences are busy")]
    Busy(u32),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token {token} is outside the vocabulary of {vocab} tokens")]
    TokenId { token: u32, vocab: u32 },
    #[error("{tokens} tokens do not fit the context of {n_ctx} tokens")]
    TooLong { tokens: usize, n_ctx: u32 },
    #[error("request handle {0} is already running")]
    Duplicate(u64),
    #[error("llama_decode failed with status {0}")]
    Decode(i32),
    #[error("llama.cpp cannot load the LoRA adapter {0} for this model")]
    Adapter(String),
    #[error("adapter {0} is not loaded")]
    UnknownAdapter(u32),
}

/// The base model, without an adapter.
pub const BASE: u32 = 0;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// KV cells of each sequence: its prompt and completion together.
    pub n_ctx_seq: u32,
    /// Tokens decoded in one step at most (prompt chunks included).
    pub n_batch: u32,
    /// Requests decoded side by side at most.
    pub n_seq_max: u32,
    pub n_threads: i32,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub handle: u64,
    pub prompt: Vec<u32>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub ignore_eos: bool,
    /// An id from `load_adapter`, or `BASE`.
    pub adapter: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token (not part of the text).
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// One row's result of a step: a new token, and whether the row ended with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub handle: u64,
    /// None when it ended on an end-of-generation token.
    pub token: Option<u32>,
    pub finish: Option<Finish>,
}

struct Row {
    handle: u64,
    seq: i32,
    /// Tokens not yet in the KV cache: the prompt's rest, or the last sampled token.
    pending: Vec<u32>,
    fed: usize,
    pos: i32,
    /// The tokens whose KV cells this row's sequence holds, in order.
    held: Vec<u32>,
    sampler: Sampler,
    max_tokens: u32,
    generated: u32,
    ignore_eos: bool,
    adapter: u32,
}

pub struct LlamaEngine {
    model: *mut ffi::Model,
    ctx: *mut ffi::Context,
    /// The context's compute threads (null: ggml makes a pool per decode, slower).
    threads: *mut ffi::Threadpool,
    batch: *mut ffi::Batch,
    n_vocab: u32,
    /// Cells per sequence (llama.cpp may round the total up).
    n_ctx: u32,
    n_batch: u32,
    n_seq_max: u32,
    free: Vec<i32>,
    /// By sequence: the tokens a free sequence's KV cells still hold from its last request,
    /// so a prompt that starts the same way decodes only its rest (llama-server's prompt cache).
    cached: Vec<Vec<u32>>,
    /// By sequence: the adapter its cached cells were computed with (they differ by adapter).
    cached_adapter: Vec<u32>,
    rows: Vec<Row>,
    adapters: HashMap<u32, *mut ffi::Adapter>,
    next_adapter: u32,
    /// The adapter set on the context now.
    current: u32,
}

// SAFETY: llama.cpp's model and context may move between threads; they are never used from two
// threads at once because every method takes `&mut self` (the binding holds it in a Mutex).
unsafe impl Send for LlamaEngine {}

static BACKEND: Once = Once::new();

impl LlamaEngine {
    pub fn load(path: &Path, settings: Settings) -> Result<Self, LlamaError> {
        BACKEND.call_once(|| unsafe {
            ffi::mk_quiet_logs();
            ffi::mk_backend_init();
        });
        let shown = path.display().to_string();
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| LlamaError::Load(shown.clone()))?;
        // SAFETY: a valid C string; null is checked.
        let model = unsafe { ffi::mk_model_load(c_path.as_ptr()) };
        if model.is_null() {
            return Err(LlamaError::Load(shown));
        }
        let n_seq_max = settings.n_seq_max.max(1);
        let n_batch = settings.n_batch.max(n_seq_max);
        let n_ctx = settings.n_ctx_seq.saturating_mul(n_seq_max);
        // SAFETY: `model` is live; the context and batch are freed in Drop (or here on failure).
        let ctx =
            unsafe { ffi::mk_context_new(model, n_ctx, n_batch, n_seq_max, settings.n_threads) };
        if ctx.is_null() {
            unsafe { ffi::mk_model_free(model) };
            return Err(LlamaError::Context(n_ctx));
        }
        // SAFETY: `ctx` is live; the pool is freed in Drop, after the context.
        let threads = unsafe { ffi::mk_threadpool_attach(ctx, settings.n_threads.max(1)) };
        let batch = unsafe { ffi::mk_batch_new(n_batch as i32) };
        let engine = Self {
            model,
            ctx,
            threads,
            batch,
            n_vocab: unsafe { ffi::mk_n_vocab(model) } as u32,
            n_ctx: unsafe { ffi::mk_n_ctx(ctx) } / n_seq_max,
            n_batch,
            n_seq_max,
            free: (0..n_seq_max as i32).rev().collect(),
            cached: vec![Vec::new(); n_seq_max as usize],
            cached_adapter: vec![BASE; n_seq_max as usize],
            rows: Vec::new(),
            adapters: HashMap::new(),
            next_adapter: BASE + 1,
            current: BASE,
        };
        Ok(engine)
    }

    pub fn vocab_size(&self) -> u32 {
        self.n_vocab
    }

    /// Tokens one request may hold: prompt and completion.
    pub fn context_length(&self) -> u32 {
        self.n_ctx
    }

    pub fn context_length_trained(&self) -> u32 {
        unsafe { ffi::mk_n_ctx_train(self.model) }.max(0) as u32
    }

    pub fn is_eog(&self, token: u32) -> bool {
        unsafe { ffi::mk_is_eog(self.model, token as i32) }
    }

    pub fn running(&self) -> usize {
        self.rows.len()
    }

    /// Loads a GGUF LoRA file; its id, never reused, for `Request::adapter` and `step_adapter`.
    pub fn load_adapter(&mut self, path: &Path) -> Result<u32, LlamaError> {
        let shown = path.display().to_string();
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| LlamaError::Adapter(shown.clone()))?;
        // SAFETY: the model is live and the path a valid C string; null is checked.
        let adapter = unsafe { ffi::mk_adapter_load(self.model, c_path.as_ptr()) };
        if adapter.is_null() {
            return Err(LlamaError::Adapter(shown));
        }
        let id = self.next_adapter;
        self.next_adapter += 1;
        self.adapters.insert(id, adapter);
        Ok(id)
    }

    /// Frees an adapter, ending its running requests first; false when it is not loaded.
    pub fn free_adapter(&mut self, id: u32) -> bool {
        let Some(adapter) = self.adapters.remove(&id) else {
            return false;
        };
        self.clear_adapter(id);
        if self.current == id {
            // SAFETY: the context is live; no adapter is a valid setting.
            unsafe { ffi::mk_set_adapter(self.ctx, std::ptr::null_mut()) };
            self.current = BASE;
        }
        // SAFETY: loaded by `load_adapter`, no longer set on the context, freed once.
        unsafe { ffi::mk_adapter_free(adapter) };
        true
    }

    /// Starts a request; how many of its prompt tokens were already in the KV cache.
    pub fn add(&mut self, request: Request) -> Result<u32, LlamaError> {
        if request.prompt.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        if let Some(&token) = request.prompt.iter().find(|&&t| t >= self.n_vocab) {
            return Err(LlamaError::TokenId {
                token,
                vocab: self.n_vocab,
            });
        }
        let tokens = request.prompt.len() + request.max_tokens as usize;
        if tokens > self.n_ctx as usize {
            return Err(LlamaError::TooLong {
                tokens,
                n_ctx: self.n_ctx,
            });
        }
        if self.rows.iter().any(|r| r.handle == request.handle) {
            return Err(LlamaError::Duplicate(request.handle));
        }
        if request.adapter != BASE && !self.adapters.contains_key(&request.adapter) {
            return Err(LlamaError::UnknownAdapter(request.adapter));
        }
        let seq = self.take_sequence(&request.prompt, request.adapter)?;
        let same_adapter = self.cached_adapter[seq as usize] == request.adapter;
        self.cached_adapter[seq as usize] = request.adapter;
        let cached = &mut self.cached[seq as usize];
        if !same_adapter {
            cached.clear();
        }
        // At least the prompt's last token is decoded: its logits give the first token.
        let reuse = common_prefix(cached, &request.prompt).min(request.prompt.len() - 1);
        cached.truncate(reuse);
        let held = std::mem::take(cached);
        // SAFETY: the context is live; cells from `reuse` on (all of them at 0) are dropped.
        unsafe {
            ffi::mk_seq_rm(
                self.ctx,
                seq,
                if reuse == 0 { -1 } else { reuse as i32 },
                -1,
            )
        };
        self.rows.push(Row {
            handle: request.handle,
            seq,
            pending: request.prompt,
            fed: reuse,
            pos: reuse as i32,
            held,
            sampler: Sampler::new(request.sampling),
            max_tokens: request.max_tokens,
            generated: 0,
            ignore_eos: request.ignore_eos,
            adapter: request.adapter,
        });
        Ok(reuse as u32)
    }

    /// The free sequence whose cached tokens (of the same adapter) share the longest prefix
    /// with `prompt`.
    fn take_sequence(&mut self, prompt: &[u32], adapter: u32) -> Result<i32, LlamaError> {
        let shared = |seq: usize| {
            if self.cached_adapter[seq] == adapter {
                common_prefix(&self.cached[seq], prompt)
            } else {
                0
            }
        };
        let best = (0..self.free.len())
            .rev()
            .max_by_key(|&i| shared(self.free[i] as usize))
            .ok_or(LlamaError::Busy(self.n_seq_max))?;
        Ok(self.free.remove(best))
    }

    /// Greedy tokens for one prompt, alone in the batch (the parity check against llama.cpp's
    /// own server); the end-of-generation token is not included.
    pub fn generate_greedy(
        &mut self,
        prompt: Vec<u32>,
        max_tokens: u32,
    ) -> Result<Vec<u32>, LlamaError> {
        const HANDLE: u64 = u64::MAX;
        if let Some(row) = self.rows.first() {
            return Err(LlamaError::Duplicate(row.handle));
        }
        let sampling = Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
        };
        self.add(Request {
            handle: HANDLE,
            prompt,
            max_tokens,
            sampling,
            ignore_eos: false,
            adapter: BASE,
        })?;
        let mut tokens = Vec::new();
        while !self.rows.is_empty() {
            match self.step() {
                Ok(emitted) => tokens.extend(emitted.iter().filter_map(|e| e.token)),
                Err(err) => {
                    self.clear();
                    return Err(err);
                }
            }
        }
        Ok(tokens)
    }

    /// Ends a request; false when it is not running.
    pub fn cancel(&mut self, handle: u64) -> bool {
        match self.rows.iter().position(|r| r.handle == handle) {
            Some(i) => {
                let row = self.rows.remove(i);
                self.cached[row.seq as usize] = row.held;
                self.free.push(row.seq);
                true
            }
            None => false,
        }
    }

    /// Ends every request (after a failed step, or at shutdown), forgetting what their cells
    /// held; their handles.
    pub fn clear(&mut self) -> Vec<u64> {
        let rows = std::mem::take(&mut self.rows);
        self.release_rows(rows)
    }

    /// Ends the requests of one adapter (`BASE`: of the base), as `clear` does.
    pub fn clear_adapter(&mut self, adapter: u32) -> Vec<u64> {
        let (ended, kept) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|row| row.adapter == adapter);
        self.rows = kept;
        self.release_rows(ended)
    }

    fn release_rows(&mut self, rows: Vec<Row>) -> Vec<u64> {
        rows.into_iter()
            .map(|row| {
                self.release(row.seq);
                row.handle
            })
            .collect()
    }

    fn release(&mut self, seq: i32) {
        // SAFETY: the context is live; removing a whole sequence never fails.
        unsafe { ffi::mk_seq_rm(self.ctx, seq, -1, -1) };
        self.cached[seq as usize].clear();
        self.free.push(seq);
    }

    /// One decode over the base's rows (all of them when no adapter is loaded).
    pub fn step(&mut self) -> Result<Vec<Emitted>, LlamaError> {
        self.step_adapter(BASE)
    }

    /// One decode over the rows of `adapter`, with it set on the context; the tokens sampled.
    /// A failed decode leaves the rows as they were (the caller ends them).
    pub fn step_adapter(&mut self, adapter: u32) -> Result<Vec<Emitted>, LlamaError> {
        if !self.rows.iter().any(|r| r.adapter == adapter) {
            return Ok(Vec::new());
        }
        if self.current != adapter {
            let pointer = self
                .adapters
                .get(&adapter)
                .copied()
                .unwrap_or(std::ptr::null_mut());
            // SAFETY: the context is live; `pointer` is a loaded adapter or null (the base).
            unsafe { ffi::mk_set_adapter(self.ctx, pointer) };
            self.current = adapter;
        }
        let outputs = self.fill_batch(adapter);
        // SAFETY: the batch was filled with at most n_batch tokens of live sequences.
        let status = unsafe { ffi::mk_decode(self.ctx, self.batch) };
        if status != 0 {
            return Err(LlamaError::Decode(status));
        }
        let mut emitted = Vec::with_capacity(outputs.len());
        let mut ended = Vec::new();
        for (row_index, batch_index) in outputs {
            // SAFETY: logits were requested at `batch_index`: n_vocab floats owned by ctx.
            let logits = unsafe {
                std::slice::from_raw_parts(
                    ffi::mk_logits(self.ctx, batch_index),
                    self.n_vocab as usize,
                )
            };
            let row = &mut self.rows[row_index];
            let token = row.sampler.sample(logits);
            row.generated += 1;
            // SAFETY: the model is live.
            let eog = !row.ignore_eos && unsafe { ffi::mk_is_eog(self.model, token as i32) };
            let finish = if eog {
                Some(Finish::Stop)
            } else if row.generated >= row.max_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            emitted.push(Emitted {
                handle: row.handle,
                token: (!eog).then_some(token),
                finish,
            });
            if finish.is_some() {
                ended.push(row.handle);
            } else {
                row.pending.clear();
                row.pending.push(token);
                row.fed = 0;
            }
        }
        for handle in ended {
            self.cancel(handle);
        }
        Ok(emitted)
    }

    /// Fills the batch: decoding rows first (one token each), then prompt chunks. Returns
    /// (row, batch index) for each row whose logits this step computes.
    fn fill_batch(&mut self, adapter: u32) -> Vec<(usize, i32)> {
        // SAFETY: the batch is live and holds n_batch tokens.
        unsafe { ffi::mk_batch_clear(self.batch) };
        let mut used = 0u32;
        let mut outputs = Vec::new();
        let order: Vec<usize> = {
            let mut idx: Vec<usize> = (0..self.rows.len())
                .filter(|&i| self.rows[i].adapter == adapter)
                .collect();
            idx.sort_by_key(|&i| self.rows[i].pending.len() - self.rows[i].fed);
            idx
        };
        for i in order {
            let row = &mut self.rows[i];
            let left = row.pending.len() - row.fed;
            let room = (self.n_batch - used) as usize;
            if left == 0 || room == 0 {
                continue;
            }
            let take = left.min(room);
            for k in 0..take {
                let last = row.fed + k + 1 == row.pending.len();
                let token = row.pending[row.fed + k] as i32;
                unsafe { ffi::mk_batch_add(self.batch, token, row.pos, row.seq, last) };
                row.held.push(token as u32);
                if last {
                    outputs.push((i, used as i32));
                }
                row.pos += 1;
                used += 1;
            }
            row.fed += take;
        }
        outputs
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        // SAFETY: each pointer was created by the shim in `load` and is freed once here.
        unsafe {
            ffi::mk_batch_free(self.batch);
            ffi::mk_context_free(self.ctx);
            for adapter in self.adapters.values() {
                ffi::mk_adapter_free(*adapter);
            }
            if !self.threads.is_null() {
                ffi::mk_threadpool_free(self.threads);
            }
            ffi::mk_model_free(self.model);
        }
    }
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
