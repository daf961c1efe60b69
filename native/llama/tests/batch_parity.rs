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
    let greedy = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        seed: None,
    };
    for (i, p) in prompts.iter().enumerate() {
        engine
            .add(Request {
                handle: i as u64,
                prompt: p.clone(),
                max_tokens: 16,
                sampling: greedy,
                ignore_eos: false,
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
