//! Incremental, UTF-8-safe detokenization from a model's `tokenizer.json`.
//!
//! Byte-level BPE vocabularies (GPT-2 style; `builtin://` models, Llama 3, Qwen) decode through
//! a table of each token's bytes: a step appends bytes and emits the longest complete UTF-8
//! prefix. Other decoders (SentencePiece-style `Metaspace`, byte fallback) go through the
//! `tokenizers` crate over a sliding window, the algorithm of its `DecodeStream`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::Tokenizer;

use crate::error::{CoreError, CoreResult};

/// A model's vocabulary, loaded once and shared by every request (read-only, so `Sync`).
pub struct Vocabulary {
    tokenizer: Tokenizer,
    /// Each token's bytes, when the decoder is plain byte-level BPE.
    token_bytes: Option<Vec<Option<Box<[u8]>>>>,
    /// Which ids are special tokens (`added_tokens` with `"special": true`: end of text,
    /// turn markers), by id; they are no generated text unless a request asks for them.
    special: Vec<bool>,
    size: usize,
}

impl Vocabulary {
    pub fn from_file(path: &str) -> CoreResult<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| CoreError::TokenizerFile {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&json, path)
    }

    pub fn from_json(json: &str, origin: &str) -> CoreResult<Self> {
        let tokenizer = Tokenizer::from_str(json).map_err(|e| CoreError::TokenizerParse {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        let vocab = tokenizer.get_vocab(true);
        let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let token_bytes = matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_)))
            .then(|| byte_table(&vocab, size));
        let mut special = vec![false; size];
        for (id, token) in tokenizer.get_added_tokens_decoder() {
            if token.special {
                if let Some(flag) = special.get_mut(id as usize) {
                    *flag = true;
                }
            }
        }
        Ok(Self {
            tokenizer,
            token_bytes,
            special,
            size,
        })
    }

    /// One more than the largest token id.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn is_byte_level(&self) -> bool {
        self.token_bytes.is_some()
    }

    /// Whether `token` names an entry of this vocabulary.
    pub fn contains(&self, token: i64) -> bool {
        let Ok(id) = usize::try_from(token) else {
            return false;
        };
        match &self.token_bytes {
            Some(table) => table.get(id).is_some_and(Option::is_some),
            None => id < self.size && self.tokenizer.id_to_token(id as u32).is_some(),
        }
    }

    /// Whether `id` is a special token (ids outside the vocabulary are not).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// One token's own bytes, as a logprob entry shows them (a byte-level token may be part
    /// of a UTF-8 sequence). `id` must be in the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Cow<'_, [u8]> {
        match &self.token_bytes {
            Some(table) => match table.get(id as usize) {
                Some(Some(bytes)) => Cow::Borrowed(bytes),
                _ => Cow::Borrowed(&[]),
            },
            None => Cow::Owned(self.window_decode(&[id]).into_bytes()),
        }
    }

    /// The whole text of `ids`; special tokens are left out when `skip_special`.
    pub fn decode(&self, ids: &[u32], strict: bool, skip_special: bool) -> CoreResult<String> {
        let mut stream = StreamDecoder::new(self, skip_special);
        let mut out = String::new();
        for &id in ids {
            stream
                .push(self, id, strict, &mut out)
                .map_err(|e| e.for_request("decode"))?;
        }
        stream
            .finish(strict, &mut out)
            .map_err(|e| e.for_request("decode"))?;
        Ok(out)
    }

    fn window_decode(&self, ids: &[u32]) -> String {
        // Ids were checked against the vocabulary, so decoding cannot fail on them. Special
        // tokens to skip never reach the window.
        self.tokenizer.decode(ids, false).unwrap_or_default()
    }
}

/// What went wrong inside one stream; the caller names the request.
#[derive(Debug)]
pub enum StreamError {
    InvalidUtf8(Vec<u8>),
}

impl StreamError {
    pub fn for_request(self, request: &str) -> CoreError {
        match self {
            StreamError::InvalidUtf8(bytes) => CoreError::InvalidUtf8 {
                request: request.to_string(),
                bytes,
            },
        }
    }
}

/// One request's decoding state: its decoder's, and whether special tokens are skipped.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    state: DecodeState,
    skip_special: bool,
}

#[derive(Debug, Clone)]
enum DecodeState {
    /// Bytes of an incomplete UTF-8 sequence, waiting for the next token.
    Bytes(Vec<u8>),
    /// `DecodeStream`'s window: the ids of the last emission (`context` of them, already
    /// shown as `shown`, decoded once per emission rather than once per token) and the ids
    /// after them, not shown yet.
    Window {
        ids: Vec<u32>,
        context: usize,
        shown: String,
    },
}

impl StreamDecoder {
    pub fn new(vocab: &Vocabulary, skip_special: bool) -> Self {
        let state = if vocab.is_byte_level() {
            DecodeState::Bytes(Vec::with_capacity(4))
        } else {
            DecodeState::Window {
                ids: Vec::new(),
                context: 0,
                shown: String::new(),
            }
        };
        Self {
            state,
            skip_special,
        }
    }

    /// Appends the text `id` completes to `out`. `id` must be in the vocabulary.
    pub fn push(
        &mut self,
        vocab: &Vocabulary,
        id: u32,
        strict: bool,
        out: &mut String,
    ) -> Result<(), StreamError> {
        if self.skip_special && vocab.is_special(id) {
            return Ok(());
        }
        match &mut self.state {
            DecodeState::Bytes(pending) => {
                if let Some(Some(bytes)) =
                    vocab.token_bytes.as_ref().and_then(|t| t.get(id as usize))
                {
                    pending.extend_from_slice(bytes);
                }
                drain_utf8(pending, strict, false, out)
            }
            DecodeState::Window {
                ids,
                context,
                shown,
            } => {
                ids.push(id);
                let now = vocab.window_decode(ids);
                if now.len() > shown.len() && !now.ends_with('\u{FFFD}') {
                    if let Some(new) = now.get(shown.len()..) {
                        out.push_str(new);
                    }
                    // The tokens just shown stay as context (a leading-space decoder treats
                    // the window's first token specially); older ones go.
                    ids.drain(..*context);
                    *context = ids.len();
                    *shown = vocab.window_decode(ids);
                }
                Ok(())
            }
        }
    }

    /// The stream ended: whatever is still held is emitted (or, strictly, is an error).
    pub fn finish(&mut self, strict: bool, out: &mut String) -> Result<(), StreamError> {
        match &mut self.state {
            DecodeState::Bytes(pending) => drain_utf8(pending, strict, true, out),
            DecodeState::Window { .. } => Ok(()),
        }
    }
}

/// Moves the complete UTF-8 prefix of `pending` to `out`. An incomplete tail waits for more
/// bytes unless `last`; an invalid sequence becomes U+FFFD, or an error when `strict`.
fn drain_utf8(
    pending: &mut Vec<u8>,
    strict: bool,
    last: bool,
    out: &mut String,
) -> Result<(), StreamError> {
    let mut at = 0;
    loop {
        match std::str::from_utf8(&pending[at..]) {
            Ok(text) => {
                out.push_str(text);
                pending.clear();
                return Ok(());
            }
            Err(e) => {
                let valid = at + e.valid_up_to();
                // SAFETY-free: the checked prefix is valid UTF-8.
                out.push_str(std::str::from_utf8(&pending[at..valid]).unwrap_or_default());
                let bad_len = match e.error_len() {
                    Some(n) => n,
                    None if !last => {
                        pending.drain(..valid);
                        return Ok(());
                    }
                    None => pending.len() - valid,
                };
                if strict {
                    let bad = pending[valid..valid + bad_len].to_vec();
                    pending.clear();
                    return Err(StreamError::InvalidUtf8(bad));
                }
                out.push('\u{FFFD}');
                at = valid + bad_len;
            }
        }
    }
}

/// GPT-2's byte-to-unicode alphabet, inverted: which byte each vocabulary char stands for.
fn char_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map.insert(char::from_u32(c).unwrap_or('\u{FFFD}'), b as u8);
    }
    map
}

/// Each token's bytes as the `ByteLevel` decoder produces them: its chars mapped back to
/// bytes, or, when a char is outside the alphabet (added tokens), its UTF-8 as is.
fn byte_table(vocab: &HashMap<String, u32>, size: usize) -> Vec<Option<Box<[u8]>>> {
    let alphabet = char_to_byte();
    let mut table = vec![None; size];
    for (token, &id) in vocab {
        let mapped: Option<Vec<u8>> = token.chars().map(|c| alphabet.get(&c).copied()).collect();
        let bytes = mapped.unwrap_or_else(|| token.as_bytes().to_vec());
        table[id as usize] = Some(bytes.into_boxed_slice());
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(bytes: &[u8], strict: bool, last: bool) -> (String, Vec<u8>, bool) {
        let mut pending = bytes.to_vec();
        let mut out = String::new();
        let err = drain_utf8(&mut pending, strict, last, &mut out).is_err();
        (out, pending, err)
    }

    #[test]
    fn incomplete_sequence_waits() {
        let e_acute = "é".as_bytes();
        assert_eq!(
            drain(&[b'a', e_acute[0]], false, false),
            ("a".into(), vec![e_acute[0]], false)
        );
        assert_eq!(drain(e_acute, false, false), ("é".into(), vec![], false));
    }

    #[test]
    fn invalid_bytes_replace_or_fail() {
        assert_eq!(
            drain(&[b'a', 0xff, b'b'], false, false),
            ("a\u{FFFD}b".into(), vec![], false)
        );
        assert!(drain(&[b'a', 0xff], true, false).2);
        assert_eq!(
            drain(&[0xc3], false, true),
            ("\u{FFFD}".into(), vec![], false)
        );
        assert!(drain(&[0xc3], true, true).2);
    }

    #[test]
    fn alphabet_is_a_bijection() {
        let map = char_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'a'], b'a');
    }

    #[test]
    fn unparsable_tokenizer_is_an_error() {
        assert!(matches!(
            Vocabulary::from_json("{not json", "x.json"),
            Err(CoreError::TokenizerParse { .. })
        ));
        assert!(matches!(
            Vocabulary::from_file("/nonexistent/tokenizer.json"),
            Err(CoreError::TokenizerFile { .. })
        ));
    }
}
