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
use crate::sample::{Logprobs, Sampler, Sampling};

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

/// What keeps a request's output inside a grammar: the tokens allowed next, following each
/// token sampled. (The core's llguidance matcher, behind this so the crate needs no core.)
pub trait Constraint: Send {
    /// The tokens allowed next, as a bitset (bit `i % 32` of word `i / 32`); once the grammar
    /// is complete, only end-of-sequence.
    fn allowed(&mut self) -> Result<Vec<u32>, String>;
    /// Follow a sampled token.
    fn consume(&mut self, token: u32) -> Result<(), String>;
    /// Whether the grammar is complete (only end-of-sequence may follow).
    fn is_stopped(&self) -> bool;
}

pub struct Request {
    pub handle: u64,
    pub prompt: Vec<u32>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub ignore_eos: bool,
    pub constraint: Option<Box<dyn Constraint>>,
    /// An id from `load_adapter`, or `BASE`.
    pub adapter: u32,
}

/// Another choice of a request (OpenAI's `n`): the same prompt and settings, sampled on its
/// own from the same prefill.
pub struct Choice {
    pub handle: u64,
    pub seed: Option<u64>,
    pub constraint: Option<Box<dyn Constraint>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token (not part of the text).
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// One row's result of a step: a new token, and whether the row ended with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub handle: u64,
    /// None when it ended on an end-of-generation token.
    pub token: Option<u32>,
    pub finish: Option<Finish>,
    /// When the request asked for them (never for the end-of-generation token).
    pub logprobs: Option<Logprobs>,
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
    constraint: Option<Box<dyn Constraint>>,
    max_tokens: u32,
    generated: u32,
    ignore_eos: bool,
    adapter: u32,
    /// The request's other choices, while this row prefills the prompt for them all.
    fork: Option<Fork>,
}

/// What a row prefilling for several choices holds back until its prompt's cells exist.
struct Fork {
    /// The prompt's last token: each choice decodes it in its own sequence.
    last: u32,
    sampling: Sampling,
    /// Each other choice and the sequence it has taken.
    others: Vec<(i32, Choice)>,
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
    /// By sequence: when its last request ended, on `clock` (see `keep_elsewhere`).
    ended_at: Vec<u64>,
    clock: u64,
    rows: Vec<Row>,
    adapters: HashMap<u32, *mut ffi::Adapter>,
    next_adapter: u32,
    /// The adapter set on the context now.
    current: u32,
    /// Where `copy_cells` puts a sequence's state on its way, kept for the next copy.
    copy_buf: Vec<u8>,
}

// SAFETY: llama.cpp's model and context may move between threads; they are never used from two
// threads at once because every method takes `&mut self` (the binding holds it in a Mutex).
unsafe impl Send for LlamaEngine {}

static BACKEND: Once = Once::new();

/// Fewest tokens worth copying another sequence's cells for: a copy moves the cells the source
/// uses through llama.cpp's per-sequence state (~23 KB a token for SmolLM2-135M), far cheaper
/// than decoding them, so a fresh sequence takes even a chat template's shared head (~30 tokens)
/// as llama-server's prompt cache does. Below this the bookkeeping is not worth it.
const COPY_MIN: usize = 16;

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
            ended_at: vec![0; n_seq_max as usize],
            clock: 0,
            rows: Vec::new(),
            adapters: HashMap::new(),
            next_adapter: BASE + 1,
            current: BASE,
            copy_buf: Vec::new(),
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

    /// Choices running (those waiting for their request's prefill included).
    pub fn running(&self) -> usize {
        self.rows
            .iter()
            .map(|r| 1 + r.fork.as_ref().map_or(0, |f| f.others.len()))
            .sum()
    }

    /// Sequences no request holds: a request of `n` choices needs `n` of them.
    pub fn free_sequences(&self) -> usize {
        self.free.len()
    }

    /// Sequences in all: the most choices one request may have.
    pub fn sequences(&self) -> u32 {
        self.n_seq_max
    }

    /// KV cells holding tokens: running requests' and those free sequences keep for reuse.
    pub fn cells_used(&self) -> usize {
        let running: usize = self.rows.iter().map(|r| r.held.len()).sum();
        running + self.cached.iter().map(Vec::len).sum::<usize>()
    }

    /// KV cells in all sequences.
    pub fn cells_total(&self) -> usize {
        self.n_ctx as usize * self.n_seq_max as usize
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
        self.add_choices(request, Vec::new())
    }

    /// Starts a request of several choices: `request` is the first, `others` the rest, each in
    /// a sequence of its own. The prompt is decoded once, in the first choice's sequence, all
    /// but its last token; then each other sequence gets a copy of those cells and every
    /// choice decodes the last token itself, sampling from there on its own (see `fork`).
    /// How many prompt tokens were already in the KV cache.
    pub fn add_choices(
        &mut self,
        request: Request,
        others: Vec<Choice>,
    ) -> Result<u32, LlamaError> {
        if request.prompt.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        let biased = request.sampling.logit_bias.iter().map(|b| &b.0);
        if let Some(&token) = request
            .prompt
            .iter()
            .chain(biased)
            .find(|&&t| t >= self.n_vocab)
        {
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
        let mut handles: Vec<u64> = others.iter().map(|c| c.handle).collect();
        handles.push(request.handle);
        handles.sort_unstable();
        let repeated = handles.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]);
        if let Some(handle) =
            repeated.or_else(|| handles.iter().copied().find(|&h| self.has_handle(h)))
        {
            return Err(LlamaError::Duplicate(handle));
        }
        if self.free.len() < 1 + others.len() {
            return Err(LlamaError::Busy(self.n_seq_max));
        }
        let adapter = request.adapter;
        if adapter != BASE && !self.adapters.contains_key(&adapter) {
            return Err(LlamaError::UnknownAdapter(adapter));
        }
        // At least the prompt's last token is decoded: its logits give the first token.
        let limit = request.prompt.len() - 1;
        let (source, shared) = self.longest_prefix(&request.prompt, adapter);
        let shared = shared.min(limit);
        let seq = self.take_sequence(&request.prompt, source, adapter);
        if self.cached_adapter[seq as usize] != adapter {
            // Cells computed with another adapter are not this prompt's.
            self.cached[seq as usize].clear();
            self.cached_adapter[seq as usize] = adapter;
        }
        let own = common_prefix(&self.cached[seq as usize], &request.prompt).min(limit);
        let (reuse, held) = if shared >= own + COPY_MIN {
            // Another sequence holds a longer prefix (a shared system prompt, or the
            // conversation a running request continues): its cells are copied, not decoded.
            let held = self.tokens_of(source)[..shared].to_vec();
            self.cached[seq as usize].clear();
            // The source's cells are copied whole (a KV stream per sequence allows no
            // ranges), then the tail past the shared prefix is dropped.
            self.copy_cells(source, seq);
            // SAFETY: the context is live and `seq` exists.
            unsafe { ffi::mk_seq_rm(self.ctx, seq, shared as i32, -1) };
            (shared, held)
        } else {
            let cached = &mut self.cached[seq as usize];
            cached.truncate(own);
            // SAFETY: the context is live; cells from `own` on (all of them at 0) are dropped.
            unsafe { ffi::mk_seq_rm(self.ctx, seq, if own == 0 { -1 } else { own as i32 }, -1) };
            (own, std::mem::take(cached))
        };
        let mut pending = request.prompt;
        let fork = if others.is_empty() {
            None
        } else {
            let others = others
                .into_iter()
                .map(|choice| (self.take_lowest(), choice))
                .collect();
            let last = pending.pop().expect("the prompt is not empty");
            let sampling = request.sampling.clone();
            Some(Fork {
                last,
                sampling,
                others,
            })
        };
        self.rows.push(Row {
            handle: request.handle,
            seq,
            pending,
            fed: reuse,
            pos: reuse as i32,
            held,
            sampler: Sampler::new(request.sampling),
            constraint: request.constraint,
            max_tokens: request.max_tokens,
            generated: 0,
            ignore_eos: request.ignore_eos,
            adapter,
            fork,
        });
        let row = self.rows.len() - 1;
        if self.rows[row].fed == self.rows[row].pending.len() {
            self.fork(row); // the cache held the prompt already: nothing to prefill
        }
        Ok(reuse as u32)
    }

    fn has_handle(&self, handle: u64) -> bool {
        self.rows.iter().any(|r| {
            r.handle == handle
                || r.fork
                    .as_ref()
                    .is_some_and(|f| f.others.iter().any(|(_, c)| c.handle == handle))
        })
    }

    /// The lowest free sequence (see `take_sequence`); there is one.
    fn take_lowest(&mut self) -> i32 {
        let lowest = (0..self.free.len())
            .min_by_key(|&i| self.free[i])
            .expect("a free sequence");
        self.free.remove(lowest)
    }

    /// Row `i` has the prompt's cells, all but the last token's: each other choice gets a copy
    /// of them in its own sequence (whole-stream with a KV stream per sequence; the first
    /// choice's stream holds nothing else), and every choice decodes the last token next.
    fn fork(&mut self, i: usize) {
        let Some(fork) = self.rows[i].fork.take() else {
            return;
        };
        let leader = &mut self.rows[i];
        leader.pending = vec![fork.last];
        leader.fed = 0;
        let (source, pos, held) = (leader.seq, leader.pos, leader.held.clone());
        let (max_tokens, ignore_eos, adapter) =
            (leader.max_tokens, leader.ignore_eos, leader.adapter);
        for (seq, choice) in fork.others {
            self.copy_cells(source, seq);
            self.cached[seq as usize].clear();
            self.cached_adapter[seq as usize] = adapter;
            let sampling = Sampling {
                seed: choice.seed,
                ..fork.sampling.clone()
            };
            self.rows.push(Row {
                handle: choice.handle,
                seq,
                pending: vec![fork.last],
                fed: 0,
                pos,
                held: held.clone(),
                sampler: Sampler::new(sampling),
                constraint: choice.constraint,
                max_tokens,
                generated: 0,
                ignore_eos,
                adapter,
                fork: None,
            });
        }
    }

    /// The sequence, running or free, whose KV cells (computed with `adapter`) hold the longest
    /// prefix of `prompt`, and that prefix's length (0 and sequence 0 when none shares a token).
    fn longest_prefix(&self, prompt: &[u32], adapter: u32) -> (i32, usize) {
        let running = self
            .rows
            .iter()
            .filter(|r| r.adapter == adapter)
            .map(|r| (r.seq, &r.held));
        let free = self
            .free
            .iter()
            .filter(|&&s| self.cached_adapter[s as usize] == adapter)
            .map(|&s| (s, &self.cached[s as usize]));
        running
            .chain(free)
            .map(|(seq, held)| (seq, common_prefix(held, prompt)))
            .max_by_key(|&(seq, shared)| (shared, std::cmp::Reverse(seq)))
            .unwrap_or((0, 0))
    }

    /// The tokens a sequence's KV cells hold.
    fn tokens_of(&self, seq: i32) -> &[u32] {
        match self.rows.iter().find(|r| r.seq == seq) {
            Some(row) => &row.held,
            None => &self.cached[seq as usize],
        }
    }

    /// The lowest free sequence, for a prompt whose longest cached prefix `source` holds: the
    /// running requests' sequence ids stay consecutive, so a step decodes them in one ubatch
    /// (see `fill_batch`); a prefix a higher free sequence holds is copied in by the caller,
    /// which costs far less than a split step. What the lowest one holds beyond this prompt is
    /// kept in another free sequence first (`keep_elsewhere`).
    fn take_sequence(&mut self, prompt: &[u32], source: i32, adapter: u32) -> i32 {
        let seq = self.take_lowest();
        let own = if self.cached_adapter[seq as usize] == adapter {
            common_prefix(&self.cached[seq as usize], prompt)
        } else {
            0
        };
        if self.cached[seq as usize].len() >= own + COPY_MIN {
            self.keep_elsewhere(seq, source);
        }
        seq
    }

    /// `seq` is about to be overwritten: its cells move to the free sequence whose request
    /// ended longest ago (an empty one first), unless that one ended later. New requests take
    /// the lowest free sequence, which is usually the one whose conversation ended a moment
    /// ago: without this, a chat's next turn found its history gone whenever another request
    /// had started in between, while conversations long over stayed cached. `source` (the
    /// cells the new prompt copies) is never the one overwritten.
    fn keep_elsewhere(&mut self, seq: i32, source: i32) {
        let age = |s: i32| {
            if self.cached[s as usize].is_empty() {
                0
            } else {
                self.ended_at[s as usize]
            }
        };
        let oldest = self
            .free
            .iter()
            .copied()
            .filter(|&s| s != seq && s != source)
            .min_by_key(|&s| (age(s), std::cmp::Reverse(s)));
        let Some(victim) = oldest else {
            return;
        };
        if age(victim) >= self.ended_at[seq as usize] {
            return;
        }
        self.copy_cells(seq, victim);
        let (from, to) = (seq as usize, victim as usize);
        self.cached[to] = self.cached[from].clone();
        self.cached_adapter[to] = self.cached_adapter[from];
        self.ended_at[to] = self.ended_at[from];
    }

    /// Gives `dst` a copy of `src`'s cells (and nothing else). The per-sequence state moves only
    /// the cells in use; should llama.cpp refuse it, a whole-stream copy does the same.
    fn copy_cells(&mut self, src: i32, dst: i32) {
        // SAFETY: the context is live, both sequences exist, and the buffer holds `size` bytes.
        unsafe {
            ffi::mk_seq_rm(self.ctx, dst, -1, -1);
            let size = ffi::mk_seq_state_size(self.ctx, src);
            if self.copy_buf.len() < size {
                self.copy_buf.resize(size, 0);
            }
            let buf = self.copy_buf.as_mut_ptr();
            let got = if size == 0 {
                0
            } else {
                ffi::mk_seq_state_get(self.ctx, buf, size, src)
            };
            if got == 0 || ffi::mk_seq_state_set(self.ctx, buf, got, dst) == 0 {
                ffi::mk_seq_rm(self.ctx, dst, -1, -1);
                ffi::mk_seq_cp(self.ctx, src, dst, -1, -1);
            }
        }
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
        self.add(Request {
            handle: HANDLE,
            prompt,
            max_tokens,
            sampling: Sampling::greedy(),
            ignore_eos: false,
            constraint: None,
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

    /// Ends a request (one choice of it); false when it is not running. Choices still waiting
    /// for their request's prefill end with the first choice.
    pub fn cancel(&mut self, handle: u64) -> bool {
        if let Some(i) = self.rows.iter().position(|r| r.handle == handle) {
            let row = self.rows.remove(i);
            self.cached[row.seq as usize] = row.held;
            self.clock += 1;
            self.ended_at[row.seq as usize] = self.clock;
            self.free.push(row.seq);
            for (seq, _) in row.fork.map(|f| f.others).unwrap_or_default() {
                self.release(seq);
            }
            return true;
        }
        for i in 0..self.rows.len() {
            let Some(fork) = self.rows[i].fork.as_mut() else {
                continue;
            };
            if let Some(k) = fork.others.iter().position(|(_, c)| c.handle == handle) {
                let (seq, _) = fork.others.remove(k);
                self.release(seq);
                return true;
            }
        }
        false
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
        let mut handles = Vec::with_capacity(rows.len());
        for row in rows {
            self.release(row.seq);
            handles.push(row.handle);
            for (seq, choice) in row.fork.map(|f| f.others).unwrap_or_default() {
                self.release(seq);
                handles.push(choice.handle);
            }
        }
        handles
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
        let mut prefilled = Vec::new();
        for (row_index, batch_index) in outputs {
            if self.rows[row_index].fork.is_some() {
                prefilled.push(row_index); // its prompt but the last token: no token yet
                continue;
            }
            // SAFETY: logits were requested at `batch_index`: n_vocab floats owned by ctx.
            let logits = unsafe {
                std::slice::from_raw_parts(
                    ffi::mk_logits(self.ctx, batch_index),
                    self.n_vocab as usize,
                )
            };
            let row = &mut self.rows[row_index];
            let (sampled, broken) = sample_row(row, logits);
            let token = sampled.token;
            row.generated += 1;
            // SAFETY: the model is live.
            let eog = !row.ignore_eos && unsafe { ffi::mk_is_eog(self.model, token as i32) };
            let finish = if eog || broken {
                Some(Finish::Stop)
            } else if row.generated >= row.max_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            emitted.push(Emitted {
                handle: row.handle,
                token: (!(eog || broken)).then_some(token),
                finish,
                logprobs: if eog || broken {
                    None
                } else {
                    sampled.logprobs
                },
            });
            if finish.is_some() {
                ended.push(row.handle);
            } else {
                row.pending.clear();
                row.pending.push(token);
                row.fed = 0;
            }
        }
        for row_index in prefilled {
            self.fork(row_index);
        }
        for handle in ended {
            self.cancel(handle);
        }
        Ok(emitted)
    }

    /// Fills the batch: decoding rows first (one token each), then prompt chunks, shortest
    /// first. Returns (row, batch index) for each row whose logits this step computes.
    ///
    /// The tokens go in by increasing sequence id: with a KV stream per sequence, llama.cpp
    /// splits a batch into one ubatch per run of consecutive sequence ids in batch order, so 16
    /// rows in any other order cost up to 16 decodes of one token each.
    fn fill_batch(&mut self, adapter: u32) -> Vec<(usize, i32)> {
        let mut order: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].adapter == adapter)
            .collect();
        order.sort_by_key(|&i| self.rows[i].pending.len() - self.rows[i].fed);
        let mut takes = vec![0usize; self.rows.len()];
        let mut room = self.n_batch as usize;
        for i in order {
            let row = &self.rows[i];
            takes[i] = (row.pending.len() - row.fed).min(room);
            room -= takes[i];
        }
        let mut by_seq: Vec<usize> = (0..self.rows.len()).collect();
        by_seq.sort_by_key(|&i| self.rows[i].seq);
        // SAFETY: the batch is live and holds n_batch tokens; at most n_batch are added.
        unsafe { ffi::mk_batch_clear(self.batch) };
        let mut used = 0i32;
        let mut outputs = Vec::new();
        for i in by_seq {
            let row = &mut self.rows[i];
            for k in 0..takes[i] {
                let last = row.fed + k + 1 == row.pending.len();
                let token = row.pending[row.fed + k] as i32;
                unsafe { ffi::mk_batch_add(self.batch, token, row.pos, row.seq, last) };
                row.held.push(token as u32);
                if last {
                    outputs.push((i, used));
                }
                row.pos += 1;
                used += 1;
            }
            row.fed += takes[i];
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

/// The row's next token, inside its grammar if it has one, and whether the grammar failed
/// (never expected: the mask allowed the token; the row then ends, the batch goes on).
fn sample_row(row: &mut Row, logits: &[f32]) -> (crate::sample::Sampled, bool) {
    let Some(constraint) = row.constraint.as_mut() else {
        return (row.sampler.sample(logits, None), false);
    };
    match constraint.allowed() {
        // A complete grammar allows end-of-sequence only, and follows nothing more: with
        // ignore_eos the row goes on with that token to max_tokens (as on MLX).
        Ok(mask) if constraint.is_stopped() => (row.sampler.sample(logits, Some(&mask)), false),
        Ok(mask) => {
            let sampled = row.sampler.sample(logits, Some(&mask));
            let broken = constraint.consume(sampled.token).is_err();
            (sampled, broken)
        }
        Err(_) => (row.sampler.sample(logits, None), true),
    }
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
