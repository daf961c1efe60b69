//! Grammar-constrained decoding: a JSON schema (or "any JSON object") compiled once per
//! schema text into an llguidance parser, and per request a matcher that says which tokens
//! may come next and follows the tokens sampled.
//!
//! The token environment is built from the model's `tokenizer.json` through llguidance's own
//! reader of it (no second copy of the `tokenizers` crate), padded to the model's logits
//! width: ids past the tokenizer's vocabulary are never allowed.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use crate::error::{CoreError, CoreResult};

/// The most bytes a schema may have: past this it is refused before compiling.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Compiled grammars kept, by schema text (oldest out first).
pub const CACHE_CAPACITY: usize = 64;

/// What a request constrains its output to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrammarSource {
    /// `response_format: {"type": "json_object"}`: any JSON object.
    JsonObject,
    /// `response_format: {"type": "json_schema"}`: the schema's JSON text.
    JsonSchema(String),
    /// A Lark grammar in llguidance's dialect (tool calls: the call syntax around `%json`).
    Lark(String),
}

impl GrammarSource {
    fn key(&self) -> &str {
        match self {
            GrammarSource::JsonObject => "json_object",
            GrammarSource::JsonSchema(text) | GrammarSource::Lark(text) => text,
        }
    }
}

/// One model's grammar compiler and its cache of compiled grammars; shared by every request.
pub struct GrammarCompiler {
    factory: ParserFactory,
    vocab_size: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    grammars: HashMap<String, Arc<CompiledGrammar>>,
    order: VecDeque<String>,
}

impl GrammarCompiler {
    /// `vocab_size` is the model's logits width (at least the tokenizer's vocabulary);
    /// `eos_tokens` the ids that end generation, the first being the one a finished grammar
    /// allows.
    pub fn new(tokenizer_json: &str, eos_tokens: &[u32], vocab_size: usize) -> CoreResult<Self> {
        let env = token_env(tokenizer_json, eos_tokens, vocab_size)?;
        let mut factory = guard(|| ParserFactory::new_simple(&env))?;
        factory.quiet();
        *factory.limits_mut() = limits();
        Ok(Self {
            factory,
            vocab_size,
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The compiled grammar of `source`, from the cache when this schema text was seen.
    pub fn compile(&self, source: &GrammarSource) -> CoreResult<Arc<CompiledGrammar>> {
        if let Some(hit) = self.lock().grammars.get(source.key()) {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(self.compile_uncached(source)?);
        let mut cache = self.lock();
        let key = source.key().to_string();
        if !cache.grammars.contains_key(&key) {
            if cache.order.len() >= CACHE_CAPACITY {
                if let Some(old) = cache.order.pop_front() {
                    cache.grammars.remove(&old);
                }
            }
            cache.order.push_back(key.clone());
            cache.grammars.insert(key, compiled.clone());
        }
        Ok(compiled)
    }

    /// How many compiled grammars the cache holds.
    pub fn cached(&self) -> usize {
        self.lock().grammars.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn compile_uncached(&self, source: &GrammarSource) -> CoreResult<CompiledGrammar> {
        let text = match source {
            GrammarSource::JsonObject => "",
            GrammarSource::JsonSchema(text) | GrammarSource::Lark(text) => text,
        };
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(CoreError::InvalidGrammar(format!(
                "the schema has {} bytes, more than the {MAX_SCHEMA_BYTES} allowed",
                text.len()
            )));
        }
        let grammar = match source {
            GrammarSource::JsonObject => TopLevelGrammar::from_json_schema(with_layout(
                serde_json::json!({"type": "object"}),
            )),
            GrammarSource::JsonSchema(text) => {
                let schema = serde_json::from_str(text).map_err(|e| {
                    CoreError::InvalidGrammar(format!("the schema is not JSON: {e}"))
                })?;
                TopLevelGrammar::from_json_schema(with_layout(schema))
            }
            GrammarSource::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        };
        let started = Instant::now();
        let parser = guard(|| self.factory.create_parser(grammar)).map_err(|e| match e {
            CoreError::Grammar(reason) => CoreError::InvalidGrammar(reason),
            other => other,
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(reason) = matcher.get_error() {
            return Err(CoreError::InvalidGrammar(reason));
        }
        Ok(CompiledGrammar {
            template: Mutex::new(matcher),
            compile_us: started.elapsed().as_micros() as u64,
            vocab_size: self.vocab_size,
        })
    }
}

/// JSON laid out as `json.dumps` does (", " and ": ", no other whitespace) unless the schema
/// says otherwise in llguidance's `x-guidance`: free whitespace would let a model pad its
/// output with blank lines until max_tokens.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

/// Bounds on compile time and size: a schema past them is an error, not a stall.
fn limits() -> ParserLimits {
    ParserLimits {
        initial_lexer_fuel: 1_000_000,
        max_grammar_size: 200_000,
        max_lexer_states: 100_000,
        ..ParserLimits::default()
    }
}

/// A compiled grammar: each request starts from a copy of its fresh matcher.
pub struct CompiledGrammar {
    template: Mutex<Matcher>,
    compile_us: u64,
    vocab_size: usize,
}

impl CompiledGrammar {
    pub fn compile_us(&self) -> u64 {
        self.compile_us
    }

    pub fn matcher(&self) -> GrammarMatcher {
        let template = self
            .template
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        GrammarMatcher {
            inner: template.deep_clone(),
            vocab_size: self.vocab_size,
        }
    }
}

/// One request's position in its grammar.
pub struct GrammarMatcher {
    inner: Matcher,
    vocab_size: usize,
}

impl GrammarMatcher {
    /// The tokens allowed next, as a bitset of little-endian `u32` words (bit `i % 32` of
    /// word `i / 32` for token `i`); once the grammar is complete, only end-of-sequence.
    pub fn mask(&mut self) -> CoreResult<Vec<u32>> {
        let vob = self.inner.compute_mask_or_eos().map_err(state_error)?;
        let words = self.vocab_size.div_ceil(32);
        let mut out = vob.as_slice().to_vec();
        out.resize(words, 0);
        Ok(out)
    }

    /// Follow a sampled token; a token the mask did not allow is an error.
    pub fn consume(&mut self, token: u32) -> CoreResult<()> {
        self.inner.consume_token(token).map_err(state_error)
    }

    /// Whether the grammar is complete (only end-of-sequence may follow).
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// Whether the output so far is a complete match.
    pub fn is_accepting(&mut self) -> bool {
        self.inner.is_accepting().unwrap_or(false)
    }
}

#[allow(clippy::needless_pass_by_value)] // `map_err(state_error)` hands the error over by value
fn state_error(e: anyhow::Error) -> CoreError {
    CoreError::Grammar(e.to_string())
}

/// llguidance reports failures as errors, but its tokenizer reader asserts on odd
/// vocabularies: a panic there becomes an error too.
fn guard<T>(work: impl FnOnce() -> anyhow::Result<T>) -> CoreResult<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(CoreError::Grammar(format!("{e:#}"))),
        Err(_) => Err(CoreError::Grammar("the grammar engine panicked".into())),
    }
}

fn token_env(tokenizer_json: &str, eos_tokens: &[u32], vocab_size: usize) -> CoreResult<TokEnv> {
    let json: Value = serde_json::from_str(tokenizer_json)
        .map_err(|e| CoreError::Grammar(format!("tokenizer.json does not parse: {e}")))?;
    let mut words = guard(|| llguidance::token_bytes_from_tokenizer_json(&json))?;
    if words.len() > vocab_size {
        return Err(CoreError::Grammar(format!(
            "the tokenizer has {} tokens, more than the model's {vocab_size} logits",
            words.len()
        )));
    }
    // Ids the model has and the tokenizer lacks: named special tokens, never allowed.
    while words.len() < vocab_size {
        let mut name = format!(".<[{}]>", words.len()).into_bytes();
        name[0] = TokTrie::SPECIAL_TOKEN_MARKER;
        words.push(name);
    }
    let Some((&eos, _)) = eos_tokens.split_first() else {
        return Err(CoreError::Grammar("no end-of-sequence token".into()));
    };
    if let Some(&bad) = eos_tokens.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(CoreError::Grammar(format!(
            "end-of-sequence token {bad} is outside the vocabulary (size {vocab_size})"
        )));
    }
    let info = TokRxInfo::new(vocab_size as u32, eos);
    let mut trie = TokTrie::from(&info, &words);
    if eos_tokens.len() > 1 {
        trie = trie.with_eos_tokens(eos_tokens);
    }
    Ok(Arc::new(ApproximateTokEnv::new(trie)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary: the 94 printable ASCII characters and space, a few
    /// multi-character tokens, and an end-of-text special token.
    fn tiny_tokenizer() -> (String, u32) {
        let mut vocab = serde_json::Map::new();
        let mut id = 0u32;
        for c in (b'!'..=b'~').map(char::from) {
            vocab.insert(c.to_string(), id.into());
            id += 1;
        }
        // "Ġ" is byte-level BPE's space.
        for word in ["Ġ", "{\"", "\":", "true", "false", "null", "ĠĠ", "name"] {
            vocab.insert(word.to_string(), id.into());
            id += 1;
        }
        let eos = id;
        vocab.insert("<|endoftext|>".into(), eos.into());
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{"id": eos, "content": "<|endoftext|>", "special": true,
                              "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false,
                        "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "vocab": vocab, "merges": []}
        });
        (json.to_string(), eos)
    }

    fn compiler(padding: usize) -> (GrammarCompiler, u32) {
        let (json, eos) = tiny_tokenizer();
        let compiler = GrammarCompiler::new(&json, &[eos], eos as usize + 1 + padding).unwrap();
        (compiler, eos)
    }

    fn allowed(mask: &[u32], token: u32) -> bool {
        mask[token as usize / 32] >> (token % 32) & 1 == 1
    }

    fn id_of(c: char) -> u32 {
        if c == ' ' {
            return 94; // "Ġ"
        }
        u32::from(c as u8 - b'!')
    }

    #[test]
    fn a_json_object_starts_with_a_brace_and_ends_with_eos() {
        let (compiler, eos) = compiler(0);
        let grammar = compiler.compile(&GrammarSource::JsonObject).unwrap();
        let mut m = grammar.matcher();
        let mask = m.mask().unwrap();
        assert!(allowed(&mask, id_of('{')));
        assert!(!allowed(&mask, id_of('[')));
        assert!(!allowed(&mask, eos));
        m.consume(id_of('{')).unwrap();
        m.consume(id_of('}')).unwrap();
        assert!(m.is_accepting());
        let mask = m.mask().unwrap();
        assert!(allowed(&mask, eos));
        assert!(!allowed(&mask, id_of('}')));
    }

    #[test]
    fn a_schema_constrains_values_and_refuses_a_wrong_token() {
        let (compiler, _) = compiler(0);
        let schema = r#"{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"],"additionalProperties":false}"#;
        let grammar = compiler
            .compile(&GrammarSource::JsonSchema(schema.into()))
            .unwrap();
        let mut m = grammar.matcher();
        for c in "{\"a\": ".chars() {
            m.consume(id_of(c)).unwrap();
        }
        let mask = m.mask().unwrap();
        assert!(allowed(&mask, id_of('t')));
        assert!(allowed(&mask, id_of('f')));
        assert!(!allowed(&mask, id_of('1')));
        assert!(m.consume(id_of('1')).is_err());
    }

    #[test]
    fn padded_ids_are_never_allowed_and_the_mask_covers_the_logits() {
        let (compiler, eos) = compiler(40);
        let grammar = compiler.compile(&GrammarSource::JsonObject).unwrap();
        let mut m = grammar.matcher();
        let mask = m.mask().unwrap();
        assert_eq!(mask.len(), (eos as usize + 41).div_ceil(32));
        for t in eos + 1..eos + 41 {
            assert!(!allowed(&mask, t));
        }
    }

    #[test]
    fn grammars_are_cached_by_schema_text() {
        let (compiler, _) = compiler(0);
        let a = compiler.compile(&GrammarSource::JsonObject).unwrap();
        let b = compiler.compile(&GrammarSource::JsonObject).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(compiler.cached(), 1);
    }

    #[test]
    fn a_bad_schema_is_an_invalid_grammar() {
        let (compiler, _) = compiler(0);
        for bad in [
            "{not json",
            r##"{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}"##,
            r#"{"type":"frobnicate"}"#,
        ] {
            let err = compiler
                .compile(&GrammarSource::JsonSchema(bad.into()))
                .err()
                .unwrap();
            assert!(matches!(err, CoreError::InvalidGrammar(_)), "{bad}: {err}");
        }
        let huge = format!("\"{}\"", "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(
            compiler.compile(&GrammarSource::JsonSchema(huge)),
            Err(CoreError::InvalidGrammar(_))
        ));
    }

    #[test]
    fn a_lark_grammar_puts_the_call_syntax_around_a_schema() {
        let (compiler, eos) = compiler(0);
        let lark = r#"start: "<t>" %json {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"], "additionalProperties": false, "x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}} "</t>""#;
        let grammar = compiler.compile(&GrammarSource::Lark(lark.into())).unwrap();
        let mut m = grammar.matcher();
        assert!(!allowed(&m.mask().unwrap(), id_of('{')));
        for c in "<t>{\"a\": true}</t>".chars() {
            assert!(allowed(&m.mask().unwrap(), id_of(c)), "{c}");
            m.consume(id_of(c)).unwrap();
        }
        assert!(m.is_accepting());
        assert!(allowed(&m.mask().unwrap(), eos));
        let bad = compiler.compile(&GrammarSource::Lark("start: %json {".into()));
        assert!(matches!(bad, Err(CoreError::InvalidGrammar(_))));
    }
}
