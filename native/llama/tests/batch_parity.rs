//! Greedy tokens of prompts decoded together equal each decoded alone, on the real model's
//! GGUF file (MODELKUBE_TEST_GGUF; skipped without it) and the parity fixture's prompts.

use std::path::PathBuf;

use modelkube_llama::{LlamaEngine, Request, Sampling, Settings, BASE};

fn fixture() -> Option<(PathBuf, Vec<Vec<u32>>)> {
    let gguf = PathBuf::from(std::env::var_os("MODELKUBE_TEST_GGUF")?);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/serving/data/smollm2_greedy_ids.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let prompts = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["prompt"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    Some((gguf, prompts))
}

#[test]
fn batched_greedy_equals_solo_greedy() {
    let Some((gguf, prompts)) = fixture() else {
        eprintln!("MODELKUBE_TEST_GGUF not set: skipped");
        return;
    };
    let settings = Settings {
        n_ctx_seq: 512,
        n_batch: 512,
        n_seq_max: 8,
        n_threads: 1,
    };
    let mut engine = LlamaEngine::load(&gguf, settings).unwrap();
    let solo: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| engine.generate_greedy(p.clone(), 16).unwrap())
        .collect();
    for (i, p) in prompts.iter().enumerate() {
        engine
            .add(Request {
                handle: i as u64,
                prompt: p.clone(),
                max_tokens: 16,
                sampling: Sampling::greedy(),
                ignore_eos: false,
                constraint: None,
                adapter: BASE,
            })
            .unwrap();
    }
    let mut together = vec![Vec::new(); prompts.len()];
    while engine.running() > 0 {
        for e in engine.step().unwrap() {
            together[e.handle as usize].extend(e.token);
        }
    }
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        eprintln!("{i}: solo {a:?}\n   together {b:?}");
    }
    assert_eq!(solo, together);
}

/// A prompt whose long prefix another sequence holds (a running request here) copies those
/// cells instead of decoding them, and its greedy tokens equal the same prompt decoded alone.
#[test]
fn copied_prefix_greedy_equals_solo_greedy() {
    let Some((gguf, prompts)) = fixture() else {
        eprintln!("MODELKUBE_TEST_GGUF not set: skipped");
        return;
    };
    let settings = Settings {
        n_ctx_seq: 512,
        n_batch: 512,
        n_seq_max: 4,
        n_threads: 1,
    };
    // A shared prefix of ~160 tokens (four fixture prompts), then different endings.
    let prefix: Vec<u32> = prompts[..4].concat();
    let first = [prefix.clone(), prompts[4].clone()].concat();
    let second = [prefix.clone(), prompts[5].clone()].concat();
    let solo = LlamaEngine::load(&gguf, settings)
        .unwrap()
        .generate_greedy(second.clone(), 16)
        .unwrap();
    let mut engine = LlamaEngine::load(&gguf, settings).unwrap();
    let request = |handle: u64, prompt: Vec<u32>| Request {
        handle,
        prompt,
        max_tokens: 16,
        sampling: Sampling::greedy(),
        ignore_eos: false,
        constraint: None,
        adapter: BASE,
    };
    assert_eq!(engine.add(request(0, first)).unwrap(), 0);
    engine.step().unwrap(); // the first prompt's cells now exist
    let reused = engine.add(request(1, second)).unwrap();
    assert!(
        reused as usize >= prefix.len(),
        "reused {reused} of {}",
        prefix.len()
    );
    let mut tokens = Vec::new();
    while engine.running() > 0 {
        for e in engine.step().unwrap() {
            if e.handle == 1 {
                tokens.extend(e.token);
            }
        }
    }
    assert_eq!(solo, tokens);
}
