//! Tool calls in a model's output, in the Hermes syntax that Qwen's and Hermes' chat templates
//! use and that the runtime's fallback prompt teaches:
//! `<tool_call>{"name": "f", "arguments": {...}}</tool_call>`.
//!
//! The parser follows the shown text as it streams. Text outside the tags is content; a
//! call's name is known once its head (`{"name": "f", "arguments": `) has arrived, and its
//! arguments are streamed as fragments from there, so a client sees OpenAI's
//! `delta.tool_calls` as the model writes them. A call whose keys come in another order is
//! read whole at its closing tag; one that is not a JSON object with a name stays text.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use serde_json::Value;

/// The tool-call syntaxes the output path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// `<tool_call>{"name": .., "arguments": ..}</tool_call>`
    Hermes,
}

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

/// What the text of one step says, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    Content(String),
    /// A call begins: its index among this response's calls, its id and its function's name.
    Start {
        index: usize,
        id: String,
        name: String,
    },
    Arguments {
        index: usize,
        fragment: String,
    },
}

/// One parsed call, as `message.tool_calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments' JSON text, as the model wrote it.
    pub arguments: String,
}

/// Where the parser is in the text.
#[derive(Debug)]
enum State {
    /// Outside a call; `held` may hold the beginning of an opening tag.
    Text,
    /// Inside a call, before its name and arguments key have all arrived.
    Head,
    /// Inside the arguments value.
    Args(ArgsScan),
    /// After the arguments, until the closing tag.
    Tail,
    /// A call whose head is not in the usual order: read whole at its closing tag.
    Whole,
}

#[derive(Debug, Default)]
struct ArgsScan {
    started: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

enum Scan {
    More,
    Fail,
    Done(String),
}

/// One response's tool-call parser.
#[derive(Debug)]
pub struct ToolCallParser {
    state: State,
    held: String,
    /// Whitespace outside calls, shown only if more content follows it, or no call came.
    blank: String,
    calls: Vec<ToolCall>,
    ids: RandomState,
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolCallParser {
    pub fn new() -> Self {
        Self {
            state: State::Text,
            held: String::new(),
            blank: String::new(),
            calls: Vec::new(),
            ids: RandomState::new(),
        }
    }

    /// The calls parsed so far.
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// Follows `text`; `last` when the response ends with it. Appends what it says to `out`.
    pub fn push(&mut self, text: &str, last: bool, out: &mut Vec<ToolEvent>) {
        for c in text.chars() {
            self.feed(c, out);
        }
        if let State::Text = self.state {
            self.flush_text(out);
        }
        if last {
            self.finish(out);
        }
    }

    fn feed(&mut self, c: char, out: &mut Vec<ToolEvent>) {
        match &mut self.state {
            State::Text => {
                self.held.push(c);
                if self.held == OPEN {
                    self.held.clear();
                    self.state = State::Head;
                } else if !OPEN.starts_with(self.held.as_str()) {
                    self.flush_text(out);
                }
            }
            State::Head => {
                self.held.push(c);
                match scan_head(&self.held) {
                    Scan::More if self.held.ends_with(CLOSE) => self.close_whole(out),
                    Scan::More => {}
                    Scan::Fail => self.state = State::Whole,
                    Scan::Done(name) => {
                        self.held.clear();
                        self.start_call(name, out);
                        self.state = State::Args(ArgsScan::default());
                    }
                }
            }
            State::Args(scan) => match scan.feed(c) {
                ArgsStep::Skip => {}
                ArgsStep::Emit { last } => {
                    self.arguments(c, out);
                    if last {
                        self.state = State::Tail;
                    }
                }
                ArgsStep::Past => {
                    self.state = State::Tail;
                    self.feed(c, out);
                }
            },
            State::Tail => {
                self.held.push(c);
                if self.held.ends_with(CLOSE) {
                    self.held.clear();
                    self.state = State::Text;
                }
            }
            State::Whole => {
                self.held.push(c);
                if self.held.ends_with(CLOSE) {
                    self.close_whole(out);
                }
            }
        }
    }

    /// Shows the held text outside calls, but for what may still become an opening tag.
    fn flush_text(&mut self, out: &mut Vec<ToolEvent>) {
        let keep = (0..=self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| OPEN.starts_with(&self.held[i..]))
            .unwrap_or(self.held.len());
        let shown: String = self.held.drain(..keep).collect();
        self.content(&shown, out);
    }

    fn content(&mut self, text: &str, out: &mut Vec<ToolEvent>) {
        if text.is_empty() {
            return;
        }
        // Trailing whitespace waits: before a call it is no content.
        let body = text.trim_end();
        if body.is_empty() {
            self.blank.push_str(text);
            return;
        }
        let mut shown = std::mem::take(&mut self.blank);
        shown.push_str(body);
        self.blank.push_str(&text[body.len()..]);
        match out.last_mut() {
            Some(ToolEvent::Content(prev)) => prev.push_str(&shown),
            _ => out.push(ToolEvent::Content(shown)),
        }
    }

    fn start_call(&mut self, name: String, out: &mut Vec<ToolEvent>) {
        self.blank.clear();
        let index = self.calls.len();
        let id = self.call_id(index);
        out.push(ToolEvent::Start {
            index,
            id: id.clone(),
            name: name.clone(),
        });
        self.calls.push(ToolCall {
            id,
            name,
            arguments: String::new(),
        });
    }

    fn arguments(&mut self, c: char, out: &mut Vec<ToolEvent>) {
        let index = self.calls.len() - 1;
        self.calls[index].arguments.push(c);
        match out.last_mut() {
            Some(ToolEvent::Arguments { index: i, fragment }) if *i == index => fragment.push(c),
            _ => out.push(ToolEvent::Arguments {
                index,
                fragment: c.to_string(),
            }),
        }
    }

    /// A call read whole at its closing tag: an object with a string `name` is a call, with
    /// its `arguments` (or `parameters`); anything else stays text.
    fn close_whole(&mut self, out: &mut Vec<ToolEvent>) {
        let raw = std::mem::take(&mut self.held);
        self.state = State::Text;
        let body = &raw[..raw.len() - CLOSE.len()];
        match parse_whole(body) {
            Some((name, arguments)) => {
                self.start_call(name, out);
                let index = self.calls.len() - 1;
                self.calls[index].arguments.clone_from(&arguments);
                out.push(ToolEvent::Arguments {
                    index,
                    fragment: arguments,
                });
            }
            None => self.content(&format!("{OPEN}{raw}"), out),
        }
    }

    fn finish(&mut self, out: &mut Vec<ToolEvent>) {
        match self.state {
            // A call cut before its name: what arrived of it is text.
            State::Head | State::Whole => {
                let raw = std::mem::take(&mut self.held);
                self.content(&format!("{OPEN}{raw}"), out);
            }
            State::Text => {
                let rest = std::mem::take(&mut self.held);
                self.content(&rest, out);
            }
            State::Args(_) | State::Tail => {}
        }
        if self.calls.is_empty() && !self.blank.is_empty() {
            let blank = std::mem::take(&mut self.blank);
            match out.last_mut() {
                Some(ToolEvent::Content(prev)) => prev.push_str(&blank),
                _ => out.push(ToolEvent::Content(blank)),
            }
        }
        self.state = State::Text;
    }

    /// `call_` and 24 hex digits, unique to this response and call.
    fn call_id(&self, index: usize) -> String {
        let mut first = self.ids.build_hasher();
        first.write_usize(index);
        let mut second = self.ids.build_hasher();
        second.write_u64(first.finish());
        let (a, b) = (first.finish(), second.finish());
        format!("call_{a:016x}{:08x}", b >> 32)
    }
}

enum ArgsStep {
    /// Whitespace before the value.
    Skip,
    /// Part of the value; `last` when it ends it.
    Emit { last: bool },
    /// Not part of the value: it ended before this character.
    Past,
}

impl ArgsScan {
    fn feed(&mut self, c: char) -> ArgsStep {
        if !self.started {
            if c.is_whitespace() {
                return ArgsStep::Skip;
            }
            self.started = true;
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
                return ArgsStep::Emit {
                    last: self.depth == 0,
                };
            }
            return ArgsStep::Emit { last: false };
        }
        if self.depth == 0 && (matches!(c, '}' | ']' | ',') || c.is_whitespace()) {
            return ArgsStep::Past;
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => {
                self.depth -= 1;
                return ArgsStep::Emit {
                    last: self.depth == 0,
                };
            }
            _ => {}
        }
        ArgsStep::Emit { last: false }
    }
}

/// Reads `{"name": "<name>", "arguments": ` (any whitespace, `parameters` for `arguments`).
fn scan_head(text: &str) -> Scan {
    let mut rest = text.trim_start();
    for expected in ["{", "\"name\"", ":"] {
        match take(&mut rest, expected) {
            Scan::Done(_) => {}
            other => return other,
        }
    }
    let name = match take_string(&mut rest) {
        Scan::Done(name) => name,
        other => return other,
    };
    if let other @ (Scan::Fail | Scan::More) = take(&mut rest, ",") {
        return other;
    }
    let text = rest.trim_start();
    let mut more = false;
    for key in ["\"arguments\"", "\"parameters\""] {
        if let Some(mut after) = text.strip_prefix(key) {
            return match take(&mut after, ":") {
                Scan::Done(_) => Scan::Done(name),
                other => other,
            };
        }
        more |= key.starts_with(text);
    }
    if more {
        Scan::More
    } else {
        Scan::Fail
    }
}

/// Takes `expected` after optional whitespace: Done, More (the text ends inside it), or Fail.
fn take(rest: &mut &str, expected: &str) -> Scan {
    let text = rest.trim_start();
    if let Some(after) = text.strip_prefix(expected) {
        *rest = after;
        Scan::Done(String::new())
    } else if expected.starts_with(text) {
        Scan::More
    } else {
        Scan::Fail
    }
}

/// Takes a JSON string literal after optional whitespace, unescaped.
fn take_string(rest: &mut &str) -> Scan {
    let text = rest.trim_start();
    if text.is_empty() {
        return Scan::More;
    }
    if !text.starts_with('"') {
        return Scan::Fail;
    }
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            let literal = &text[..=i];
            *rest = &text[i + 1..];
            return match serde_json::from_str::<String>(literal) {
                Ok(name) if !name.is_empty() => Scan::Done(name),
                _ => Scan::Fail,
            };
        }
    }
    Scan::More
}

fn parse_whole(body: &str) -> Option<(String, String)> {
    let Value::Object(map) = serde_json::from_str::<Value>(body.trim()).ok()? else {
        return None;
    };
    let name = map
        .get("name")?
        .as_str()
        .filter(|n| !n.is_empty())?
        .to_string();
    let arguments = match map.get("arguments").or_else(|| map.get("parameters")) {
        None => "{}".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(value) => value.to_string(),
    };
    Some((name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the parser says for `text` fed in pieces of `size` characters.
    fn parse(text: &str, size: usize) -> (Vec<ToolEvent>, Vec<ToolCall>) {
        let mut parser = ToolCallParser::new();
        let chars: Vec<char> = text.chars().collect();
        let pieces: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
        let mut out = vec![];
        for (i, piece) in pieces.iter().enumerate() {
            parser.push(piece, i + 1 == pieces.len(), &mut out);
        }
        (out, parser.calls().to_vec())
    }

    fn content(events: &[ToolEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                ToolEvent::Content(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn arguments(events: &[ToolEvent], index: usize) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                ToolEvent::Arguments { index: i, fragment } if *i == index => {
                    Some(fragment.as_str())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn text_without_calls_is_content_whatever_the_pieces() {
        for size in [1, 2, 5, 100] {
            let (events, calls) = parse("a < b, <tool and <tool_cal\n", size);
            assert_eq!(content(&events), "a < b, <tool and <tool_cal\n");
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn a_call_streams_its_name_then_its_arguments() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \
                    {\"city\": \"Paris \\\"}\", \"days\": [1, 2]}}\n</tool_call>";
        for size in [1, 3, 7, 1000] {
            let (events, calls) = parse(text, size);
            assert_eq!(content(&events), "", "{events:?}");
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].name, "get_weather");
            assert_eq!(
                calls[0].arguments,
                "{\"city\": \"Paris \\\"}\", \"days\": [1, 2]}"
            );
            assert_eq!(arguments(&events, 0), calls[0].arguments);
            assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29);
            let start = events
                .iter()
                .position(|e| matches!(e, ToolEvent::Start { .. }));
            let first_args = events
                .iter()
                .position(|e| matches!(e, ToolEvent::Arguments { .. }));
            assert!(start < first_args);
        }
    }

    #[test]
    fn several_calls_and_the_text_around_them() {
        let text = "Let me look.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n\
                    <tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"b\"}</tool_call>\n";
        for size in [1, 4, 1000] {
            let (events, calls) = parse(text, size);
            assert_eq!(content(&events), "Let me look.");
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["a", "b"]);
            assert_eq!(calls[1].arguments, "{\"x\":1}");
            assert_ne!(calls[0].id, calls[1].id);
        }
    }

    #[test]
    fn what_is_not_a_call_stays_text() {
        for text in [
            "<tool_call>not json</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"cut",
        ] {
            let (events, calls) = parse(text, 2);
            assert_eq!(content(&events), text);
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn a_call_cut_in_its_arguments_keeps_what_came() {
        let (events, calls) = parse("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ", 3);
        assert_eq!(calls[0].arguments, "{\"a\": ");
        assert_eq!(content(&events), "");
    }
}
