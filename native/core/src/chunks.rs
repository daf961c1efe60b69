//! Ready-to-write SSE frames with OpenAI's chunk JSON, byte-for-byte what
//! `json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)` gives.

use std::fmt::Write as _;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// One request's chunk framing: the constant head is rendered once, at registration.
#[derive(Debug, Clone)]
pub struct ChunkFormat {
    endpoint: Endpoint,
    /// `data: {"id":..,"object":..,"created":..,"model":..,"choices":[`
    head: Vec<u8>,
}

impl ChunkFormat {
    pub fn new(endpoint: Endpoint, id: &str, model: &str, created: i64) -> Self {
        let object = match endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Text => "text_completion",
        };
        let mut head = b"data: {\"id\":".to_vec();
        push_json_str(&mut head, id);
        head.extend_from_slice(b",\"object\":");
        push_json_str(&mut head, object);
        head.extend_from_slice(format!(",\"created\":{created},\"model\":").as_bytes());
        push_json_str(&mut head, model);
        head.extend_from_slice(b",\"choices\":[");
        Self { endpoint, head }
    }

    pub fn delta(&self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        match self.endpoint {
            Endpoint::Chat => out.extend_from_slice(b"{\"index\":0,\"delta\":{\"content\":"),
            Endpoint::Text => out.extend_from_slice(b"{\"index\":0,\"text\":"),
        }
        push_json_str(out, text);
        if self.endpoint == Endpoint::Chat {
            out.push(b'}');
        }
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    }

    pub fn finish(&self, reason: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        match self.endpoint {
            Endpoint::Chat => out.extend_from_slice(b"{\"index\":0,\"delta\":{}"),
            Endpoint::Text => out.extend_from_slice(b"{\"index\":0,\"text\":\"\""),
        }
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        push_json_str(out, reason);
        out.extend_from_slice(b"}]}\n\n");
    }

    pub fn usage(&self, usage: Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        let total = usage.prompt_tokens + usage.completion_tokens;
        let body = format!(
            "],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{total},\
             \"prompt_tokens_details\":{{\"cached_tokens\":{}}}}}}}\n\n",
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        );
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escapes_like_python_json() {
        let mut out = vec![];
        push_json_str(&mut out, "a\"b\\c\nd\u{1}é\u{7f}\u{2028}");
        assert_eq!(text(&out), "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\u{2028}\"");
    }

    #[test]
    fn chat_frames() {
        let f = ChunkFormat::new(Endpoint::Chat, "chatcmpl-1", "m", 7);
        let mut out = vec![];
        f.delta("hi", &mut out);
        assert_eq!(
            text(&out),
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\
             \"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\
             \"logprobs\":null,\"finish_reason\":null}]}\n\n"
        );
        out.clear();
        f.finish("stop", &mut out);
        assert!(text(&out).ends_with(
            "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
        ));
        out.clear();
        f.usage(
            Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                cached_tokens: 1,
            },
            &mut out,
        );
        assert!(text(&out).ends_with(
            "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\
             \"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n"
        ));
    }

    #[test]
    fn text_frames() {
        let f = ChunkFormat::new(Endpoint::Text, "cmpl-1", "m", 7);
        let mut out = vec![];
        f.delta("a", &mut out);
        assert!(text(&out).contains("\"object\":\"text_completion\""));
        assert!(text(&out).ends_with(
            "[{\"index\":0,\"text\":\"a\",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        ));
    }
}
