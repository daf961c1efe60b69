//! The per-token output path: one call per engine step for the whole batch.
//!
//! Each request registered here is detokenized incrementally, has its stop strings applied
//! across token boundaries, and, when streaming, gets its SSE frames rendered; non-streaming
//! requests accumulate their text until they finish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::chunks::{ChunkFormat, Endpoint, Usage};
use crate::detok::{StreamDecoder, Vocabulary};
use crate::error::{CoreError, CoreResult};
use crate::stops::StopMatcher;

/// How many finished handles are remembered, to tell "finished" from "unknown" in errors.
const FINISHED_MEMORY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// How a request is registered.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub request_id: String,
    pub endpoint: Endpoint,
    pub created: i64,
    pub stream: bool,
    /// Whether to render SSE frames (off when the caller adds logprobs to its own chunks).
    pub frames: bool,
    pub include_usage: bool,
    pub stops: Vec<String>,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
}

/// One token of one request in a step; `token` is None when there is none to show (EOS).
#[derive(Debug, Clone, Copy)]
pub struct StepInput {
    pub handle: u64,
    pub token: Option<i64>,
    pub finish: Option<Finish>,
}

/// What one request has to report after a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub handle: u64,
    /// Streaming: the new text. Non-streaming: empty until it finishes, then all of it.
    pub text: String,
    /// Streaming with frames: the SSE bytes to write (the finish and usage chunks included).
    pub frame: Option<Vec<u8>>,
    pub finish: Option<Finish>,
    pub completion_tokens: u64,
    /// Tokens since this request last reported.
    pub tokens: u64,
}

struct Request {
    spec: RequestSpec,
    format: Option<ChunkFormat>,
    decoder: StreamDecoder,
    stops: StopMatcher,
    text: String,
    completion_tokens: u64,
    unreported: u64,
}

#[derive(Default)]
struct Table {
    running: HashMap<u64, Request>,
    finished: HashSet<u64>,
    finished_order: VecDeque<u64>,
}

impl Table {
    fn remember_finished(&mut self, handle: u64) {
        if self.finished.insert(handle) {
            self.finished_order.push_back(handle);
        }
        while self.finished_order.len() > FINISHED_MEMORY {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    fn missing(&self, handle: u64) -> CoreError {
        if self.finished.contains(&handle) {
            CoreError::RequestFinished(handle.to_string())
        } else {
            CoreError::UnknownRequest(handle.to_string())
        }
    }
}

/// Every running request's output state; safe to share between threads.
pub struct OutputPath {
    vocab: Arc<Vocabulary>,
    model: String,
    strict_utf8: bool,
    table: Mutex<Table>,
}

impl OutputPath {
    pub fn new(vocab: Arc<Vocabulary>, model: String, strict_utf8: bool) -> Self {
        Self {
            vocab,
            model,
            strict_utf8,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic cannot leave a request half-updated in a way later steps would misread.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.table().running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add(&self, handle: u64, spec: RequestSpec) -> CoreResult<()> {
        let mut table = self.table();
        if table.running.contains_key(&handle) {
            return Err(CoreError::DuplicateRequest(handle.to_string()));
        }
        table.finished.remove(&handle);
        let format = (spec.stream && spec.frames)
            .then(|| ChunkFormat::new(spec.endpoint, &spec.request_id, &self.model, spec.created));
        let request = Request {
            stops: StopMatcher::new(spec.stops.clone()),
            decoder: StreamDecoder::new(&self.vocab),
            spec,
            format,
            text: String::new(),
            completion_tokens: 0,
            unreported: 0,
        };
        table.running.insert(handle, request);
        Ok(())
    }

    /// Forgets a request without output (cancelled or failed elsewhere).
    pub fn discard(&self, handle: u64) -> CoreResult<()> {
        let mut table = self.table();
        if table.running.remove(&handle).is_none() {
            return Err(table.missing(handle));
        }
        table.remember_finished(handle);
        Ok(())
    }

    /// Applies one engine step. Every input is checked before any state changes, so an error
    /// leaves all requests as they were.
    pub fn step(&self, inputs: &[StepInput]) -> CoreResult<Vec<StepOutput>> {
        let mut table = self.table();
        for input in inputs {
            let Some(request) = table.running.get(&input.handle) else {
                return Err(table.missing(input.handle));
            };
            if let Some(token) = input.token {
                if !self.vocab.contains(token) {
                    return Err(CoreError::TokenId {
                        request: request.spec.request_id.clone(),
                        token,
                        vocab_size: self.vocab.size(),
                    });
                }
            }
        }
        let mut outputs = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Some(request) = table.running.get_mut(&input.handle) else {
                // The same handle twice in one step, finished by its first entry.
                return Err(table.missing(input.handle));
            };
            let output = self.advance(input, request)?;
            if let Some(output) = output {
                if output.finish.is_some() {
                    table.running.remove(&input.handle);
                    table.remember_finished(input.handle);
                }
                outputs.push(output);
            }
        }
        Ok(outputs)
    }

    fn advance(&self, input: &StepInput, request: &mut Request) -> CoreResult<Option<StepOutput>> {
        let strict = self.strict_utf8;
        let id = &request.spec.request_id;
        let mut decoded = String::new();
        if let Some(token) = input.token {
            request.completion_tokens += 1;
            request.unreported += 1;
            request
                .decoder
                .push(&self.vocab, token as u32, strict, &mut decoded)
                .map_err(|e| e.for_request(id))?;
        }
        if input.finish.is_some() {
            request
                .decoder
                .finish(strict, &mut decoded)
                .map_err(|e| e.for_request(id))?;
        }
        let mut shown = String::new();
        let stopped = request
            .stops
            .push(&decoded, &mut shown, input.finish.is_some());
        let finish = if stopped {
            Some(Finish::Stop)
        } else {
            input.finish
        };
        let first = request.completion_tokens == 1 && input.token.is_some();
        if shown.is_empty() && finish.is_none() && !first {
            return Ok(None);
        }
        let tokens = std::mem::take(&mut request.unreported);
        let text = if request.spec.stream {
            shown
        } else {
            request.text.push_str(&shown);
            if finish.is_some() {
                std::mem::take(&mut request.text)
            } else {
                String::new()
            }
        };
        let frame = request.format.as_ref().and_then(|format| {
            let mut frame = Vec::with_capacity(160 + text.len());
            if !text.is_empty() {
                format.delta(&text, &mut frame);
            }
            if let Some(finish) = finish {
                format.finish(finish.as_str(), &mut frame);
                if request.spec.include_usage {
                    let usage = Usage {
                        prompt_tokens: request.spec.prompt_tokens,
                        completion_tokens: request.completion_tokens,
                        cached_tokens: request.spec.cached_tokens,
                    };
                    format.usage(usage, &mut frame);
                }
            }
            (!frame.is_empty()).then_some(frame)
        });
        Ok(Some(StepOutput {
            handle: input.handle,
            text,
            frame,
            finish,
            completion_tokens: request.completion_tokens,
            tokens,
        }))
    }
}
