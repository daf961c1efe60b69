//! The one renderer of the OpenAI wire format: every SSE chunk of a streamed completion (the
//! role chunk, deltas with their logprobs, the finish, usage, `[DONE]`, error frames) and the
//! JSON body of a completion that is not streamed. Compact JSON, strings escaped as Python's
//! `json.dumps(..., ensure_ascii=False)` does.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::detok::Vocabulary;
use crate::toolcalls::{ToolCall, ToolSyntax};

/// The end of every successful stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// What a logprob that is not a finite number is shown as (OpenAI's own stand-in for -inf).
const NOT_FINITE_LOGPROB: f64 = -9999.0;

/// Appends `s` as a JSON string literal, escaping as Python's `json` does with
/// `ensure_ascii=False`.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let mut hex = String::with_capacity(6);
            let _ = write!(hex, "\\u{b:04x}");
            out.extend_from_slice(hex.as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A JSON string literal or `null`.
fn push_json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A float as the shortest text that reads back as the same double (Python's `repr` gives
/// the same number); not-finite values, which JSON cannot carry, as OpenAI's -9999.0.
fn push_f64(out: &mut Vec<u8>, v: f64) {
    let v = if v.is_finite() { v } else { NOT_FINITE_LOGPROB };
    let _ = write!(out, "{v:?}");
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let _ = write!(out, "{v}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Text,
}

/// Why a completion ended, as OpenAI's `finish_reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    /// It stopped after calling tools.
    ToolCalls,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// One generated token's logprob entry: the values come from the engine, the offset from
/// the output path (characters into the returned text where the token's text begins).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
    /// The most likely alternatives, most likely first.
    pub top: Vec<(u32, f64)>,
    pub offset: u64,
}

/// An OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorBody<'a> {
    pub message: &'a str,
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// How one request's response is rendered: the service decides it, from the request.
#[derive(Debug, Clone)]
pub struct RenderSpec {
    pub request_id: String,
    /// The model name the request asked for (an adapter's is `<base>:<adapter>`).
    pub model: String,
    pub endpoint: Endpoint,
    pub stream: bool,
    pub include_usage: bool,
    pub created: i64,
    pub logprobs: bool,
    /// How many alternatives each logprob entry shows at most.
    pub top_logprobs: usize,
    /// Which choice of the response this is (`index`), of how many (`n`). A response of
    /// several choices is closed by `close` or `join` once all of them finished; a choice's
    /// own finish renders only its finish chunk, or its choice object.
    pub index: u32,
    pub choices: u32,
    /// Chat only: tool calls written in this syntax are parsed into `tool_calls`.
    pub tools: Option<ToolSyntax>,
}

impl RenderSpec {
    /// Whether this choice's finish also ends the response (usage, `[DONE]`, the body).
    pub fn sole(&self) -> bool {
        self.choices <= 1
    }

    /// The same response's choice `index`.
    #[must_use]
    pub fn for_choice(&self, index: u32) -> Self {
        Self {
            index,
            ..self.clone()
        }
    }
}

/// One request's renderer: the constant head of its chunks is rendered once.
#[derive(Debug, Clone)]
pub struct Renderer {
    spec: RenderSpec,
    /// `data: {"id":..,"object":..,"created":..,"model":..,"choices":[`
    head: Vec<u8>,
}

impl Renderer {
    pub fn new(spec: RenderSpec) -> Self {
        let object = match spec.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Text => "text_completion",
        };
        let mut head = b"data: ".to_vec();
        push_object_head(&mut head, &spec, object);
        Self { spec, head }
    }

    pub fn spec(&self) -> &RenderSpec {
        &self.spec
    }

    /// What a stream opens with: the role chunk of a chat completion; nothing for text.
    pub fn start(&self, out: &mut Vec<u8>) {
        if self.spec.endpoint == Endpoint::Chat {
            for index in 0..self.spec.choices.max(1) {
                out.extend_from_slice(&self.head);
                push_index(out, index);
                out.extend_from_slice(
                    b"\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\
                      \"logprobs\":null,\"finish_reason\":null}]}\n\n",
                );
            }
        }
    }

    /// A chunk of new text and the logprobs of the tokens it shows.
    pub fn delta(
        &self,
        vocab: &Vocabulary,
        text: &str,
        logprobs: &[TokenLogprob],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&self.head);
        match self.spec.endpoint {
            Endpoint::Chat => {
                push_index(out, self.spec.index);
                out.extend_from_slice(b"\"delta\":{\"content\":");
                push_json_str(out, text);
                out.push(b'}');
            }
            Endpoint::Text => {
                push_index(out, self.spec.index);
                out.extend_from_slice(b"\"text\":");
                push_json_str(out, text);
            }
        }
        self.chunk_end(vocab, logprobs, out);
    }

    /// A chat chunk of a tool call: its start (`id`, `type`, the function's name, no
    /// arguments yet) when `start` is given, else a fragment of its arguments.
    pub fn tool_delta(
        &self,
        vocab: &Vocabulary,
        index: usize,
        start: Option<(&str, &str)>,
        arguments: &str,
        logprobs: &[TokenLogprob],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&self.head);
        let _ = write!(
            out,
            "{{\"index\":{},\"delta\":{{\"tool_calls\":[{{\"index\":{index},",
            self.spec.index
        );
        if let Some((id, name)) = start {
            out.extend_from_slice(b"\"id\":");
            push_json_str(out, id);
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            push_json_str(out, name);
            out.extend_from_slice(b",\"arguments\":");
        } else {
            out.extend_from_slice(b"\"function\":{\"arguments\":");
        }
        push_json_str(out, arguments);
        out.extend_from_slice(b"}}]}");
        self.chunk_end(vocab, logprobs, out);
    }

    /// `,"logprobs":..,"finish_reason":null}]}` and the frame's end.
    fn chunk_end(&self, vocab: &Vocabulary, logprobs: &[TokenLogprob], out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"logprobs\":");
        if self.spec.logprobs && !logprobs.is_empty() {
            self.push_logprobs(vocab, logprobs, out);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"finish_reason\":null}]}\n\n");
    }

    pub fn finish(&self, reason: Finish, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        push_index(out, self.spec.index);
        match self.spec.endpoint {
            Endpoint::Chat => out.extend_from_slice(b"\"delta\":{}"),
            Endpoint::Text => out.extend_from_slice(b"\"text\":\"\""),
        }
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        push_json_str(out, reason.as_str());
        out.extend_from_slice(b"}]}\n\n");
    }

    /// The usage chunk, when the request asked for it (`stream_options.include_usage`).
    pub fn usage(&self, usage: Usage, out: &mut Vec<u8>) {
        if self.spec.include_usage {
            out.extend_from_slice(&self.head);
            out.extend_from_slice(b"],\"usage\":");
            push_usage(out, usage);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// The end of a stream: the usage chunk (when asked for), then `[DONE]`.
    pub fn close(&self, usage: Usage, out: &mut Vec<u8>) {
        self.usage(usage, out);
        out.extend_from_slice(DONE);
    }

    /// An error in the middle of a stream, as the data frame of an OpenAI error body.
    pub fn error(error: ErrorBody<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"error\":{\"message\":");
        push_json_str(out, error.message);
        out.extend_from_slice(b",\"type\":");
        push_json_str(out, error.kind);
        out.extend_from_slice(b",\"param\":");
        push_json_opt(out, error.param);
        out.extend_from_slice(b",\"code\":");
        push_json_opt(out, error.code);
        out.extend_from_slice(b"}}\n\n");
    }

    /// The whole response of a completion that is not streamed; a chat message with tool
    /// calls has them in `tool_calls`, and `content` null unless it said more than blanks.
    #[allow(clippy::too_many_arguments)]
    pub fn body(
        &self,
        vocab: &Vocabulary,
        text: &str,
        calls: &[ToolCall],
        logprobs: &[TokenLogprob],
        finish: Finish,
        usage: Usage,
        out: &mut Vec<u8>,
    ) {
        let mut choice = Vec::with_capacity(128 + text.len());
        self.choice(vocab, text, calls, logprobs, finish, &mut choice);
        self.join(&[choice], usage, out);
    }

    /// One choice object of a response that is not streamed (`{"index": .., ..}`); a chat
    /// message with tool calls has them in `tool_calls`, and `content` null unless it said
    /// more than blanks.
    pub fn choice(
        &self,
        vocab: &Vocabulary,
        text: &str,
        calls: &[ToolCall],
        logprobs: &[TokenLogprob],
        finish: Finish,
        out: &mut Vec<u8>,
    ) {
        push_index(out, self.spec.index);
        match self.spec.endpoint {
            Endpoint::Chat => {
                out.extend_from_slice(b"\"message\":{\"role\":\"assistant\",\"content\":");
                let content = calls.is_empty() || !text.trim().is_empty();
                push_json_opt(out, content.then_some(text));
                out.extend_from_slice(b",\"refusal\":null");
                if !calls.is_empty() {
                    push_tool_calls(out, calls);
                }
                out.push(b'}');
            }
            Endpoint::Text => {
                out.extend_from_slice(b"\"text\":");
                push_json_str(out, text);
            }
        }
        out.extend_from_slice(b",\"logprobs\":");
        if self.spec.logprobs {
            self.push_logprobs(vocab, logprobs, out);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"finish_reason\":");
        push_json_str(out, finish.as_str());
        out.push(b'}');
    }

    /// The whole response of choice objects rendered by `choice`, in index order.
    pub fn join(&self, choices: &[Vec<u8>], usage: Usage, out: &mut Vec<u8>) {
        let object = match self.spec.endpoint {
            Endpoint::Chat => "chat.completion",
            Endpoint::Text => "text_completion",
        };
        push_object_head(out, &self.spec, object);
        for (i, choice) in choices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(choice);
        }
        out.extend_from_slice(b"],\"usage\":");
        push_usage(out, usage);
        out.push(b'}');
    }

    fn push_logprobs(&self, vocab: &Vocabulary, items: &[TokenLogprob], out: &mut Vec<u8>) {
        let top_n = self.spec.top_logprobs;
        match self.spec.endpoint {
            Endpoint::Chat => {
                out.extend_from_slice(b"{\"content\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_chat_fields(vocab, item.token, item.logprob, out);
                    out.extend_from_slice(b",\"top_logprobs\":[");
                    for (j, &(token, logprob)) in item.top.iter().take(top_n).enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        push_chat_fields(vocab, token, logprob, out);
                        out.push(b'}');
                    }
                    out.extend_from_slice(b"]}");
                }
                out.extend_from_slice(b"],\"refusal\":null}");
            }
            Endpoint::Text => {
                out.extend_from_slice(b"{\"tokens\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_json_str(out, &token_text(vocab, item.token));
                }
                out.extend_from_slice(b"],\"token_logprobs\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_f64(out, item.logprob);
                }
                out.extend_from_slice(b"],\"top_logprobs\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_top_object(vocab, &item.top[..item.top.len().min(top_n)], out);
                }
                out.extend_from_slice(b"],\"text_offset\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_u64(out, item.offset);
                }
                out.extend_from_slice(b"]}");
            }
        }
    }
}

/// `{"id":..,"object":..,"created":..,"model":..,"choices":[`
fn push_object_head(out: &mut Vec<u8>, spec: &RenderSpec, object: &str) {
    out.extend_from_slice(b"{\"id\":");
    push_json_str(out, &spec.request_id);
    out.extend_from_slice(b",\"object\":");
    push_json_str(out, object);
    let _ = write!(out, ",\"created\":{},\"model\":", spec.created);
    push_json_str(out, &spec.model);
    out.extend_from_slice(b",\"choices\":[");
}

/// `{"index":N,` opening a choice.
fn push_index(out: &mut Vec<u8>, index: u32) {
    let _ = write!(out, "{{\"index\":{index},");
}

/// `,"tool_calls":[{"id":..,"type":"function","function":{"name":..,"arguments":..}},..]`
fn push_tool_calls(out: &mut Vec<u8>, calls: &[ToolCall]) {
    out.extend_from_slice(b",\"tool_calls\":[");
    for (i, call) in calls.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_json_str(out, &call.id);
        out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
        push_json_str(out, &call.name);
        out.extend_from_slice(b",\"arguments\":");
        push_json_str(out, &call.arguments);
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
}

fn push_usage(out: &mut Vec<u8>, usage: Usage) {
    let total = usage.prompt_tokens + usage.completion_tokens;
    let _ = write!(
        out,
        "{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{total},\
         \"prompt_tokens_details\":{{\"cached_tokens\":{}}}}}",
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
    );
}

/// A token's text as a logprob entry names it: its bytes, with U+FFFD where they are not a
/// whole UTF-8 sequence (`bytes` carries them exactly).
fn token_text(vocab: &Vocabulary, token: u32) -> String {
    String::from_utf8_lossy(&vocab.token_bytes(token)).into_owned()
}

/// `{"token":..,"logprob":..,"bytes":[..]`, left open for the caller to close.
fn push_chat_fields(vocab: &Vocabulary, token: u32, logprob: f64, out: &mut Vec<u8>) {
    let bytes = vocab.token_bytes(token);
    out.extend_from_slice(b"{\"token\":");
    push_json_str(out, &String::from_utf8_lossy(&bytes));
    out.extend_from_slice(b",\"logprob\":");
    push_f64(out, logprob);
    out.extend_from_slice(b",\"bytes\":[");
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_u64(out, u64::from(*b));
    }
    out.push(b']');
}

/// Completions' `{token: logprob}` of the alternatives; a text shown twice (two partial
/// UTF-8 tokens both read U+FFFD) keeps its first, likelier, value.
fn push_top_object(vocab: &Vocabulary, top: &[(u32, f64)], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut seen: Vec<String> = Vec::with_capacity(top.len());
    for &(token, logprob) in top {
        let text = token_text(vocab, token);
        if seen.contains(&text) {
            continue;
        }
        if !seen.is_empty() {
            out.push(b',');
        }
        push_json_str(out, &text);
        out.push(b':');
        push_f64(out, logprob);
        seen.push(text);
    }
    out.push(b'}');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A byte-level vocabulary: `a`=0, `b`=1, `Ġ`=2 (a space), the two bytes of `é` (3, 4),
    /// and the special `<|endoftext|>`=5.
    pub(crate) fn vocab() -> Vocabulary {
        let json = r#"{
            "version": "1.0",
            "added_tokens": [{"id": 5, "content": "<|endoftext|>", "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false,
                "vocab": {"a": 0, "b": 1, "Ġ": 2, "Ã": 3, "©": 4, "<|endoftext|>": 5},
                "merges": []}
        }"#;
        Vocabulary::from_json(json, "test").unwrap()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn spec(endpoint: Endpoint) -> RenderSpec {
        RenderSpec {
            request_id: "id-1".into(),
            model: "m".into(),
            endpoint,
            stream: true,
            include_usage: true,
            created: 7,
            logprobs: true,
            top_logprobs: 2,
            index: 0,
            choices: 1,
            tools: None,
        }
    }

    const HEAD: &str = "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\
                        \"model\":\"m\",\"choices\":[";

    #[test]
    fn escapes_like_python_json() {
        let mut out = vec![];
        push_json_str(&mut out, "a\"b\\c\nd\u{1}é\u{7f}\u{2028}");
        assert_eq!(text(&out), "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\u{2028}\"");
    }

    #[test]
    fn floats_read_back_exactly_and_never_break_json() {
        for v in [-0.1f64, -2.345_600_128_173_828, -1e-7, 0.0, -1.5e-300] {
            let mut out = vec![];
            push_f64(&mut out, v);
            assert_eq!(text(&out).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
        for v in [f64::NEG_INFINITY, f64::NAN] {
            let mut out = vec![];
            push_f64(&mut out, v);
            assert_eq!(text(&out), "-9999.0");
        }
    }

    #[test]
    fn chat_role_delta_finish_usage_and_done() {
        let v = vocab();
        let r = Renderer::new(RenderSpec {
            logprobs: false,
            ..spec(Endpoint::Chat)
        });
        let mut out = vec![];
        r.start(&mut out);
        assert_eq!(
            text(&out),
            format!(
                "{HEAD}{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\
                 \"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
            )
        );
        out.clear();
        r.delta(&v, "hi", &[], &mut out);
        assert_eq!(
            text(&out),
            format!(
                "{HEAD}{{\"index\":0,\"delta\":{{\"content\":\"hi\"}},\
                 \"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
            )
        );
        out.clear();
        r.finish(Finish::Stop, &mut out);
        assert_eq!(
            text(&out),
            format!(
                "{HEAD}{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\
                 \"finish_reason\":\"stop\"}}]}}\n\n"
            )
        );
        out.clear();
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            cached_tokens: 1,
        };
        r.usage(usage, &mut out);
        assert_eq!(
            text(&out),
            format!(
                "{HEAD}],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":2,\
                 \"total_tokens\":5,\"prompt_tokens_details\":{{\"cached_tokens\":1}}}}}}\n\n"
            )
        );
        let quiet = Renderer::new(RenderSpec {
            include_usage: false,
            ..spec(Endpoint::Chat)
        });
        out.clear();
        quiet.usage(usage, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn chat_logprobs_name_each_token_its_bytes_and_alternatives() {
        let v = vocab();
        let r = Renderer::new(spec(Endpoint::Chat));
        let items = [
            TokenLogprob {
                token: 3, // the first byte of "é": not text on its own
                logprob: -0.5,
                top: vec![(3, -0.5), (0, -1.25), (1, -3.0)],
                offset: 0,
            },
            TokenLogprob {
                token: 4,
                logprob: -0.25,
                top: vec![],
                offset: 0,
            },
        ];
        let mut out = vec![];
        r.delta(&v, "é", &items, &mut out);
        assert_eq!(
            text(&out),
            format!(
                "{HEAD}{{\"index\":0,\"delta\":{{\"content\":\"é\"}},\"logprobs\":{{\"content\":[\
                 {{\"token\":\"\u{FFFD}\",\"logprob\":-0.5,\"bytes\":[195],\"top_logprobs\":[\
                 {{\"token\":\"\u{FFFD}\",\"logprob\":-0.5,\"bytes\":[195]}},\
                 {{\"token\":\"a\",\"logprob\":-1.25,\"bytes\":[97]}}]}},\
                 {{\"token\":\"\u{FFFD}\",\"logprob\":-0.25,\"bytes\":[169],\"top_logprobs\":[]}}\
                 ],\"refusal\":null}},\"finish_reason\":null}}]}}\n\n"
            )
        );
    }

    #[test]
    fn completion_logprobs_carry_text_offsets() {
        let v = vocab();
        let r = Renderer::new(spec(Endpoint::Text));
        let items = [
            TokenLogprob {
                token: 0,
                logprob: -1.0,
                top: vec![(0, -1.0), (3, -2.0), (4, -2.5)],
                offset: 4,
            },
            TokenLogprob {
                token: 2,
                logprob: -0.5,
                top: vec![],
                offset: 5,
            },
        ];
        let mut out = vec![];
        r.delta(&v, "a ", &items, &mut out);
        assert_eq!(
            text(&out),
            "data: {\"id\":\"id-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\",\
             \"choices\":[{\"index\":0,\"text\":\"a \",\"logprobs\":{\"tokens\":[\"a\",\" \"],\
             \"token_logprobs\":[-1.0,-0.5],\"top_logprobs\":[{\"a\":-1.0,\"\u{FFFD}\":-2.0},{}],\
             \"text_offset\":[4,5]},\"finish_reason\":null}]}\n\n"
        );
    }

    #[test]
    fn bodies_of_completions_not_streamed() {
        let v = vocab();
        let usage = Usage {
            prompt_tokens: 2,
            completion_tokens: 1,
            cached_tokens: 0,
        };
        let items = [TokenLogprob {
            token: 1,
            logprob: -0.75,
            top: vec![],
            offset: 0,
        }];
        let chat = Renderer::new(RenderSpec {
            stream: false,
            ..spec(Endpoint::Chat)
        });
        let mut out = vec![];
        chat.body(&v, "b", &[], &items, Finish::Length, usage, &mut out);
        assert_eq!(
            text(&out),
            "{\"id\":\"id-1\",\"object\":\"chat.completion\",\"created\":7,\"model\":\"m\",\
             \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"b\",\
             \"refusal\":null},\"logprobs\":{\"content\":[{\"token\":\"b\",\"logprob\":-0.75,\
             \"bytes\":[98],\"top_logprobs\":[]}],\"refusal\":null},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":2,\
             \"completion_tokens\":1,\"total_tokens\":3,\"prompt_tokens_details\":\
             {\"cached_tokens\":0}}}"
        );
        let plain = Renderer::new(RenderSpec {
            stream: false,
            logprobs: false,
            ..spec(Endpoint::Text)
        });
        out.clear();
        plain.body(&v, "b", &[], &[], Finish::Stop, usage, &mut out);
        assert!(text(&out).starts_with("{\"id\":\"id-1\",\"object\":\"text_completion\""));
        assert!(text(&out).contains(
            "\"choices\":[{\"index\":0,\"text\":\"b\",\"logprobs\":null,\"finish_reason\":\"stop\"}]"
        ));
    }

    #[test]
    fn error_frames_are_openai_error_bodies() {
        let mut out = vec![];
        Renderer::error(
            ErrorBody {
                message: "generation failed: \"x\"",
                kind: "server_error",
                param: None,
                code: Some("engine_error"),
            },
            &mut out,
        );
        assert_eq!(
            text(&out),
            "data: {\"error\":{\"message\":\"generation failed: \\\"x\\\"\",\
             \"type\":\"server_error\",\"param\":null,\"code\":\"engine_error\"}}\n\n"
        );
    }

    #[test]
    fn several_choices_open_with_a_role_chunk_each_and_close_once() {
        let v = vocab();
        let group = RenderSpec {
            logprobs: false,
            choices: 2,
            ..spec(Endpoint::Chat)
        };
        let mut out = vec![];
        Renderer::new(group.clone()).start(&mut out);
        let frames = text(&out);
        assert_eq!(frames.matches("\"role\":\"assistant\"").count(), 2);
        assert!(
            frames.contains("{\"index\":1,\"delta\":{\"role\""),
            "{frames}"
        );
        let second = Renderer::new(group.for_choice(1));
        out.clear();
        second.delta(&v, "a", &[], &mut out);
        second.finish(Finish::Length, &mut out);
        assert_eq!(text(&out).matches("{\"index\":1,").count(), 2);
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0,
        };
        out.clear();
        second.close(usage, &mut out);
        assert!(
            text(&out).ends_with("}\n\ndata: [DONE]\n\n"),
            "{}",
            text(&out)
        );
        let bodies = Renderer::new(RenderSpec {
            stream: false,
            ..group
        });
        let (mut a, mut b) = (vec![], vec![]);
        bodies.choice(&v, "a", &[], &[], Finish::Stop, &mut a);
        Renderer::new(bodies.spec().for_choice(1)).choice(
            &v,
            "b",
            &[],
            &[],
            Finish::Length,
            &mut b,
        );
        out.clear();
        bodies.join(&[a, b], usage, &mut out);
        let body = text(&out);
        assert!(body.contains("\"choices\":[{\"index\":0,"), "{body}");
        assert!(
            body.contains("},{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"b\"")
        );
        assert!(
            body.ends_with("\"total_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":0}}}")
        );
    }

    #[test]
    fn a_text_stream_opens_with_nothing() {
        let mut out = vec![];
        Renderer::new(spec(Endpoint::Text)).start(&mut out);
        assert!(out.is_empty());
    }
}
