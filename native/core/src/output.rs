//! The per-token output path: one call per engine step for the whole batch.
//!
//! Each request registered here is detokenized incrementally (special tokens left out unless
//! it asks for them), has its stop strings applied across token boundaries, and has its
//! response rendered: SSE chunks as it streams, or the whole JSON body when it finishes.
//! A token's logprob entry goes out with the chunk that shows the token's text, so text held
//! back for a possible stop string holds its logprobs too, and the tokens of a stop string
//! that cut the text have none.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::detok::{StreamDecoder, Vocabulary};
use crate::error::{CoreError, CoreResult};
use crate::render::{Finish, Renderer, TokenLogprob, Usage};
use crate::stops::StopMatcher;
use crate::toolcalls::{ToolCallParser, ToolEvent};

/// How many finished handles are remembered, to tell "finished" from "unknown" in errors.
const FINISHED_MEMORY: usize = 4096;

/// How a request is registered.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub render: Arc<Renderer>,
    pub stops: Vec<String>,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub skip_special_tokens: bool,
}

/// A generated token's logprob and its most likely alternatives, from the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Logprobs {
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
}

/// One token of one request in a step; `token` is None when there is none to show (EOS).
#[derive(Debug, Clone)]
pub struct StepInput {
    pub handle: u64,
    pub token: Option<i64>,
    pub finish: Option<Finish>,
    /// Only read for requests that asked for logprobs.
    pub logprobs: Option<Logprobs>,
}

/// What one request has to report after a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub handle: u64,
    /// Streaming: the new text. Not streaming: empty until it finishes, then all of it.
    pub text: String,
    /// What to write: streaming, the SSE chunks of this step (with the finish, the usage
    /// chunk and `[DONE]` at the end); not streaming, the JSON body once it finishes.
    pub data: Option<Vec<u8>>,
    pub finish: Option<Finish>,
    pub completion_tokens: u64,
    /// Tokens since this request last reported.
    pub tokens: u64,
}

/// An entry waiting for its token's text to be shown: it begins at `offset` and ends at
/// `end`, in characters of the decoded text.
#[derive(Debug)]
struct Pending {
    entry: TokenLogprob,
    end: u64,
}

struct Request {
    spec: RequestSpec,
    decoder: StreamDecoder,
    stops: StopMatcher,
    /// Chat with tools: the parser of tool calls in the shown text.
    tools: Option<ToolCallParser>,
    /// Not streaming: the text so far.
    text: String,
    decoded_chars: u64,
    shown_chars: u64,
    pending: VecDeque<Pending>,
    /// Not streaming: the logprob entries so far.
    logprobs: Vec<TokenLogprob>,
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
    strict_utf8: bool,
    table: Mutex<Table>,
}

impl OutputPath {
    pub fn new(vocab: Arc<Vocabulary>, strict_utf8: bool) -> Self {
        Self {
            vocab,
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
        let request = Request {
            stops: StopMatcher::new(spec.stops.clone()),
            tools: spec.render.spec().tools.map(|_| ToolCallParser::new()),
            decoder: StreamDecoder::new(&self.vocab, spec.skip_special_tokens),
            spec,
            text: String::new(),
            decoded_chars: 0,
            shown_chars: 0,
            pending: VecDeque::new(),
            logprobs: Vec::new(),
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
            let id = || request.spec.render.spec().request_id.clone();
            let alternatives = input.logprobs.iter().flat_map(|l| l.top.iter());
            let tokens = input
                .token
                .into_iter()
                .chain(alternatives.map(|&(t, _)| i64::from(t)));
            for token in tokens {
                if !self.vocab.contains(token) {
                    return Err(CoreError::TokenId {
                        request: id(),
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
        let render = Arc::clone(&request.spec.render);
        let spec = render.spec();
        let id = &spec.request_id;
        let mut decoded = String::new();
        if let Some(token) = input.token {
            request.completion_tokens += 1;
            request.unreported += 1;
            request
                .decoder
                .push(&self.vocab, token as u32, strict, &mut decoded)
                .map_err(|e| e.for_request(id))?;
            let start = request.decoded_chars;
            request.decoded_chars += decoded.chars().count() as u64;
            if let (true, Some(lp)) = (spec.logprobs, &input.logprobs) {
                request.pending.push_back(Pending {
                    entry: TokenLogprob {
                        token: token as u32,
                        logprob: lp.logprob,
                        top: lp.top.clone(),
                        offset: start,
                    },
                    end: request.decoded_chars,
                });
            }
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
        request.shown_chars += shown.chars().count() as u64;
        let mut finish = if stopped {
            Some(Finish::Stop)
        } else {
            input.finish
        };
        let released = release(request, finish.is_some(), stopped);
        let events = parse_tools(request, &shown, &mut finish);
        let first = request.completion_tokens == 1 && input.token.is_some();
        if shown.is_empty() && released.is_empty() && finish.is_none() && !first {
            return Ok(None);
        }
        let tokens = std::mem::take(&mut request.unreported);
        let usage = Usage {
            prompt_tokens: request.spec.prompt_tokens,
            completion_tokens: request.completion_tokens,
            cached_tokens: request.spec.cached_tokens,
        };
        let (text, data) = if spec.stream {
            let mut frames = Vec::with_capacity(192 + shown.len());
            if let Some(events) = &events {
                push_tool_events(&render, &self.vocab, events, &released, &mut frames);
            } else if !shown.is_empty() || !released.is_empty() {
                render.delta(&self.vocab, &shown, &released, &mut frames);
            }
            if let Some(finish) = finish {
                render.finish(finish, &mut frames);
                if spec.sole() {
                    render.close(usage, &mut frames);
                }
            }
            (shown, (!frames.is_empty()).then_some(frames))
        } else {
            match &events {
                Some(events) => request.text.extend(events.iter().filter_map(content)),
                None => request.text.push_str(&shown),
            }
            request.logprobs.extend(released);
            match finish {
                Some(finish) => {
                    let text = std::mem::take(&mut request.text);
                    let calls = request.tools.as_ref().map_or(&[][..], |p| p.calls());
                    let mut body = Vec::with_capacity(256 + text.len());
                    let lp = &request.logprobs;
                    if spec.sole() {
                        render.body(&self.vocab, &text, calls, lp, finish, usage, &mut body);
                    } else {
                        // One of several choices: the service joins them.
                        render.choice(&self.vocab, &text, calls, lp, finish, &mut body);
                    }
                    (text, Some(body))
                }
                None => (String::new(), None),
            }
        };
        Ok(Some(StepOutput {
            handle: input.handle,
            text,
            data,
            finish,
            completion_tokens: request.completion_tokens,
            tokens,
        }))
    }
}

/// A chat with tools: what the shown text says (content, calls); a stop after calls is
/// `tool_calls`. None without tools.
fn parse_tools(
    request: &mut Request,
    shown: &str,
    finish: &mut Option<Finish>,
) -> Option<Vec<ToolEvent>> {
    let parser = request.tools.as_mut()?;
    let mut events = Vec::new();
    parser.push(shown, finish.is_some(), &mut events);
    if *finish == Some(Finish::Stop) && !parser.calls().is_empty() {
        *finish = Some(Finish::ToolCalls);
    }
    Some(events)
}

fn content(event: &ToolEvent) -> Option<&str> {
    match event {
        ToolEvent::Content(text) => Some(text),
        _ => None,
    }
}

/// The chunks of one step of a chat with tools, in the order its text says them; the logprob
/// entries released go with the first.
fn push_tool_events(
    render: &Renderer,
    vocab: &Vocabulary,
    events: &[ToolEvent],
    released: &[TokenLogprob],
    out: &mut Vec<u8>,
) {
    let mut logprobs = released;
    for event in events {
        match event {
            ToolEvent::Content(text) => render.delta(vocab, text, logprobs, out),
            ToolEvent::Start { index, id, name } => {
                render.tool_delta(vocab, *index, Some((id, name)), "", logprobs, out);
            }
            ToolEvent::Arguments { index, fragment } => {
                render.tool_delta(vocab, *index, None, fragment, logprobs, out);
            }
        }
        logprobs = &[];
    }
    if !logprobs.is_empty() {
        render.delta(vocab, "", logprobs, out);
    }
}

/// The logprob entries whose tokens' text is shown now. Once a stop string cut the text,
/// the tokens that begin at or after the cut are the stop string's, and get none.
fn release(request: &mut Request, finished: bool, stopped: bool) -> Vec<TokenLogprob> {
    let shown = request.shown_chars;
    let mut out = Vec::new();
    while let Some(front) = request.pending.front() {
        let ready = if stopped {
            front.entry.offset < shown
        } else if finished {
            true
        } else if front.end > front.entry.offset {
            front.end <= shown
        } else {
            // No text of its own (a skipped special token, or bytes of a character not
            // complete yet): it goes with the text that follows it.
            front.end < shown
        };
        if !ready {
            break;
        }
        if let Some(p) = request.pending.pop_front() {
            out.push(p.entry);
        }
    }
    if finished {
        request.pending.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Endpoint, RenderSpec};

    // The test vocabulary of `render`: a=0 b=1 space=2, the bytes of "é" 3 and 4,
    // <|endoftext|>=5 (special).
    fn vocab() -> Arc<Vocabulary> {
        Arc::new(crate::render::tests::vocab())
    }

    fn spec(endpoint: Endpoint, stream: bool, stops: &[&str]) -> RequestSpec {
        RequestSpec {
            render: Arc::new(Renderer::new(RenderSpec {
                request_id: "r".into(),
                model: "m".into(),
                endpoint,
                stream,
                include_usage: false,
                created: 0,
                logprobs: true,
                top_logprobs: 0,
                index: 0,
                choices: 1,
                tools: None,
            })),
            stops: stops.iter().map(|s| (*s).to_string()).collect(),
            prompt_tokens: 1,
            cached_tokens: 0,
            skip_special_tokens: true,
        }
    }

    fn input(token: i64, last: bool) -> StepInput {
        StepInput {
            handle: 1,
            token: Some(token),
            finish: last.then_some(Finish::Length),
            logprobs: Some(Logprobs {
                logprob: -(token as f64),
                top: vec![],
            }),
        }
    }

    /// Every step's outputs for `tokens`, the last one finishing by length.
    fn run(out: &OutputPath, tokens: &[i64]) -> Vec<StepOutput> {
        let mut rows = vec![];
        for (i, &t) in tokens.iter().enumerate() {
            let got = out.step(&[input(t, i + 1 == tokens.len())]).unwrap();
            let done = got.iter().any(|o| o.finish.is_some());
            rows.extend(got);
            if done {
                break;
            }
        }
        rows
    }

    fn frames(rows: &[StepOutput]) -> String {
        rows.iter()
            .filter_map(|r| r.data.as_deref())
            .map(|d| String::from_utf8(d.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn special_tokens_are_no_text_unless_asked() {
        let v = vocab();
        let out = OutputPath::new(Arc::clone(&v), false);
        out.add(1, spec(Endpoint::Text, false, &[])).unwrap();
        let rows = run(&out, &[0, 5, 1]);
        assert_eq!(rows.last().unwrap().text, "ab");
        let mut keep = spec(Endpoint::Text, false, &[]);
        keep.skip_special_tokens = false;
        out.add(2, keep).unwrap();
        let mut last = None;
        for (i, t) in [0, 5, 1].into_iter().enumerate() {
            let mut step = input(t, i == 2);
            step.handle = 2;
            last = out.step(&[step]).unwrap().pop();
        }
        assert_eq!(last.unwrap().text, "a<|endoftext|>b");
        assert_eq!(v.decode(&[0, 5, 1], false, true).unwrap(), "ab");
        assert_eq!(
            v.decode(&[0, 5, 1], false, false).unwrap(),
            "a<|endoftext|>b"
        );
    }

    #[test]
    fn text_offsets_count_characters_into_the_returned_text() {
        let out = OutputPath::new(vocab(), false);
        out.add(1, spec(Endpoint::Text, false, &[])).unwrap();
        // "a", "é" in two tokens, a skipped special, " ", "b": "aé b"
        let rows = run(&out, &[0, 3, 4, 5, 2, 1]);
        let body = frames(&rows);
        assert!(body.contains("\"text\":\"aé b\""), "{body}");
        assert!(body.contains("\"text_offset\":[0,1,1,2,2,3]"), "{body}");
    }

    #[test]
    fn streamed_offsets_and_logprobs_agree_with_the_body() {
        let out = OutputPath::new(vocab(), false);
        out.add(1, spec(Endpoint::Text, true, &[])).unwrap();
        let streamed = frames(&run(&out, &[0, 3, 4, 5, 2, 1]));
        let offsets: Vec<&str> = streamed
            .split("\"text_offset\":[")
            .skip(1)
            .map(|s| &s[..s.find(']').unwrap()])
            .collect();
        // "é" waits for its second byte: its first token goes out with it.
        assert_eq!(offsets, ["0", "1,1", "2,2", "3"]);
        assert!(streamed.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_stop_string_holds_its_tokens_logprobs_and_drops_them() {
        let out = OutputPath::new(vocab(), false);
        out.add(1, spec(Endpoint::Text, true, &[" b"])).unwrap();
        let rows = run(&out, &[0, 2, 1, 0]);
        let streamed = frames(&rows);
        assert_eq!(rows.last().unwrap().finish, Some(Finish::Stop));
        // " " is held as the start of " b", then cut: only "a" is shown, with its entry.
        assert!(streamed.contains("\"text\":\"a\",\"logprobs\":{\"tokens\":[\"a\"]"));
        assert_eq!(streamed.matches("\"tokens\":").count(), 1, "{streamed}");
        assert_eq!(rows.last().unwrap().completion_tokens, 3);
    }

    #[test]
    fn a_stream_that_asked_no_logprobs_shows_none() {
        let out = OutputPath::new(vocab(), false);
        let mut quiet = spec(Endpoint::Chat, true, &[]);
        quiet.render = Arc::new(Renderer::new(RenderSpec {
            logprobs: false,
            ..quiet.render.spec().clone()
        }));
        out.add(1, quiet).unwrap();
        let streamed = frames(&run(&out, &[0, 1]));
        assert!(!streamed.contains("\"content\":["));
        assert_eq!(streamed.matches("\"logprobs\":null").count(), 3);
    }

    /// A chat with tools over a vocabulary of single characters: the text is fed one
    /// character per step through the parser, as tokens would be.
    fn tools_run(stream: bool, text: &str) -> String {
        let chars: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        let mut ids: Vec<&String> = vec![];
        for c in &chars {
            if !ids.contains(&c) {
                ids.push(c);
            }
        }
        let entries: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Byte-level names: a space is "Ġ", a newline "Ċ".
                let name = c.replace(' ', "Ġ").replace('\n', "Ċ");
                format!("{}: {i}", serde_json::to_string(&name).unwrap())
            })
            .collect();
        let json = format!("{{{}}}", entries.join(", "));
        let tokenizer = format!(
            r#"{{"version": "1.0", "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true}},
            "post_processor": null,
            "decoder": {{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true}},
            "model": {{"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "vocab": {json}, "merges": []}}}}"#
        );
        let vocab = Arc::new(Vocabulary::from_json(&tokenizer, "t").unwrap());
        let out = OutputPath::new(Arc::clone(&vocab), false);
        let mut request = spec(Endpoint::Chat, stream, &[]);
        request.render = Arc::new(Renderer::new(RenderSpec {
            logprobs: false,
            tools: Some(crate::toolcalls::ToolSyntax::Hermes),
            ..request.render.spec().clone()
        }));
        out.add(1, request).unwrap();
        let mut frames = String::new();
        for (i, c) in chars.iter().enumerate() {
            let token = ids.iter().position(|x| *x == c).unwrap();
            let step = StepInput {
                handle: 1,
                token: Some(i64::try_from(token).unwrap()),
                finish: (i + 1 == chars.len()).then_some(Finish::Stop),
                logprobs: None,
            };
            for o in out.step(&[step]).unwrap() {
                frames.push_str(&String::from_utf8(o.data.unwrap_or_default()).unwrap());
            }
        }
        frames
    }

    #[test]
    fn tool_calls_stream_as_openai_deltas_and_end_with_tool_calls() {
        let text = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>";
        let frames = tools_run(true, text);
        assert!(
            frames.contains("\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_"),
            "{frames}"
        );
        assert!(frames
            .contains("\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}"));
        let fragments: String = frames
            .split("{\"index\":0,\"function\":{\"arguments\":\"")
            .skip(1)
            .map(|s| &s[..s.find("\"}}]}").unwrap()])
            .collect();
        assert_eq!(fragments, "{\\\"a\\\": 1}");
        assert!(!frames.contains("\"content\":\"<"));
        assert!(frames.contains("\"finish_reason\":\"tool_calls\""));
    }

    #[test]
    fn a_body_with_tool_calls_has_no_content() {
        let text = "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>\n";
        let body = tools_run(false, text);
        assert!(
            body.contains(
                "\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\
             \"tool_calls\":[{\"id\":\"call_"
            ),
            "{body}"
        );
        assert!(body.contains("\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}"));
        assert!(body.contains("\"finish_reason\":\"tool_calls\""));
        let plain = tools_run(false, "just text");
        assert!(
            plain.contains("\"content\":\"just text\",\"refusal\":null}"),
            "{plain}"
        );
        assert!(plain.contains("\"finish_reason\":\"stop\""));
    }

    #[test]
    fn a_bad_alternative_fails_the_step_before_any_change() {
        let v = vocab();
        let out = OutputPath::new(Arc::clone(&v), false);
        out.add(1, spec(Endpoint::Chat, true, &[])).unwrap();
        let mut bad = input(0, false);
        bad.logprobs = Some(Logprobs {
            logprob: -1.0,
            top: vec![(v.size() as u32, -1.0)],
        });
        assert!(matches!(out.step(&[bad]), Err(CoreError::TokenId { .. })));
        assert_eq!(run(&out, &[0])[0].completion_tokens, 1);
    }
}
