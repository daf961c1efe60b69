//! Greedy tokens of prompts decoded together equal each decoded alone, on the real model's
//! GGUF file (MODELKUBE_TEST_GGUF; skipped without it) and the parity fixture's prompts.

use std::path::PathBuf;

use modelkube_llama::{Choice, LlamaEngine, LlamaError, Request, Sampling, Settings, BASE};

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

/// Sequences of 512 cells, one thread: what every test here runs on.
fn settings(n_batch: u32, n_seq_max: u32) -> Settings {
    Settings {
        n_ctx_seq: 512,
        n_batch,
        n_seq_max,
        n_threads: 1,
    }
}

/// An engine of `settings(n_batch, n_seq_max)` on the fixture's model, and its prompts; None
/// (the test is skipped) without MODELKUBE_TEST_GGUF.
fn loaded(n_batch: u32, n_seq_max: u32) -> Option<(LlamaEngine, Vec<Vec<u32>>)> {
    let Some((gguf, prompts)) = fixture() else {
        eprintln!("MODELKUBE_TEST_GGUF not set: skipped");
        return None;
    };
    let engine = LlamaEngine::load(&gguf, settings(n_batch, n_seq_max)).unwrap();
    Some((engine, prompts))
}

#[test]
fn batched_greedy_equals_solo_greedy() {
    let Some((mut engine, prompts)) = loaded(512, 8) else {
        return;
    };
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
    let settings = settings(512, 4);
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

fn greedy(handle: u64, prompt: Vec<u32>) -> Request {
    Request {
        handle,
        prompt,
        max_tokens: 16,
        sampling: Sampling::greedy(),
        ignore_eos: false,
        constraint: None,
        adapter: BASE,
    }
}

fn choice(handle: u64) -> Choice {
    Choice {
        handle,
        seed: None,
        constraint: None,
    }
}

/// `n` greedy choices from one prefill (the prompt decoded once, its cells copied into each
/// choice's sequence) each equal the prompt decoded alone, token for token; beside a request
/// that is not forked, and with a prompt the cache held already (forked at once).
#[test]
fn forked_greedy_choices_equal_solo_greedy() {
    let Some((mut engine, prompts)) = loaded(512, 8) else {
        return;
    };
    let (a, b) = (prompts[0].clone(), prompts[1].clone());
    let solo_a = engine.generate_greedy(a.clone(), 16).unwrap();
    let solo_b = engine.generate_greedy(b.clone(), 16).unwrap();
    let mut tokens = vec![Vec::new(); 10];
    engine.add(greedy(9, b)).unwrap();
    // Another request already decoding: the fork's prefill and its choices share its steps.
    tokens[9].extend(engine.step().unwrap().iter().filter_map(|e| e.token));
    engine
        .add_choices(greedy(0, a.clone()), (1..4).map(choice).collect())
        .unwrap();
    assert_eq!(engine.running(), 5);
    assert_eq!(engine.free_sequences(), 3);
    while engine.running() > 0 {
        for e in engine.step().unwrap() {
            tokens[e.handle as usize].extend(e.token);
        }
    }
    for (handle, got) in tokens.iter().enumerate().take(4) {
        assert_eq!(&solo_a, got, "choice {handle}");
    }
    assert_eq!(solo_b, tokens[9]);
    // Now a free sequence holds `b` (and its answer): the fork is at once, with nothing to
    // decode but each choice's last prompt token.
    let b = prompts[1].clone();
    let cached = engine
        .add_choices(greedy(20, b.clone()), (21..23).map(choice).collect())
        .unwrap();
    assert_eq!(cached as usize, b.len() - 1);
    let mut again = vec![Vec::new(); 3];
    while engine.running() > 0 {
        for e in engine.step().unwrap() {
            again[e.handle as usize - 20].extend(e.token);
        }
    }
    assert_eq!(again, vec![solo_b.clone(); 3]);
}

/// A request of more choices than free sequences is refused whole (nothing taken); cancelling
/// a request mid-prefill frees the sequences its other choices had taken.
#[test]
fn choices_take_free_sequences_and_cancelling_frees_them_all() {
    // Steps of 16 tokens: the prompt takes several to prefill.
    let Some((mut engine, prompts)) = loaded(16, 4) else {
        return;
    };
    let prompt = prompts[0].clone();
    assert!(prompt.len() > 32);
    engine.add(greedy(0, prompt.clone())).unwrap();
    let refused = engine.add_choices(greedy(1, prompt.clone()), (2..5).map(choice).collect());
    assert!(matches!(refused, Err(LlamaError::Busy(4))), "{refused:?}");
    assert_eq!((engine.running(), engine.free_sequences()), (1, 3));
    let repeated = engine.add_choices(greedy(1, prompt.clone()), vec![choice(0)]);
    assert!(
        matches!(repeated, Err(LlamaError::Duplicate(0))),
        "{repeated:?}"
    );
    engine
        .add_choices(greedy(1, prompt.clone()), (2..4).map(choice).collect())
        .unwrap();
    assert_eq!(engine.free_sequences(), 0);
    engine.step().unwrap();
    assert!(engine.cancel(3), "a choice waiting for the prefill");
    assert!(engine.cancel(1), "the choice prefilling");
    assert!(!engine.cancel(2), "ended with the first choice");
    assert_eq!((engine.running(), engine.free_sequences()), (1, 3));
    assert!(engine.cancel(0));
    assert_eq!(engine.free_sequences(), 4);
}

/// The cells in use follow what the sequences hold: the prompt as it prefills, each token as
/// it decodes, the finished request's cells kept for reuse, none after `clear`.
#[test]
fn cells_used_count_what_the_sequences_hold() {
    let Some((mut engine, prompts)) = loaded(512, 4) else {
        return;
    };
    assert_eq!(engine.cells_total(), 512 * 4);
    assert_eq!(engine.cells_used(), 0);
    let prompt = prompts[0].clone();
    engine.add(greedy(0, prompt.clone())).unwrap();
    engine.step().unwrap(); // the whole prompt in one step
    assert_eq!(engine.cells_used(), prompt.len());
    engine.step().unwrap(); // the first sampled token's cell
    assert_eq!(engine.cells_used(), prompt.len() + 1);
    assert!(engine.cancel(0));
    assert_eq!(
        engine.cells_used(),
        prompt.len() + 1,
        "kept for the next prompt"
    );
    engine.add(greedy(1, prompt.clone())).unwrap();
    assert_eq!(
        engine.cells_used(),
        prompt.len() - 1,
        "all but the last token reused"
    );
    engine.clear();
    assert_eq!(engine.cells_used(), 0);
}

/// Greedy tokens of one request run alone to its end.
fn run_alone(engine: &mut LlamaEngine, handle: u64, prompt: Vec<u32>) -> (u32, Vec<u32>) {
    let reused = engine.add(greedy(handle, prompt)).unwrap();
    let mut tokens = Vec::new();
    while engine.running() > 0 {
        for e in engine.step().unwrap() {
            tokens.extend(e.token);
        }
    }
    (reused, tokens)
}

/// A conversation's next turn finds its history cached although other requests started
/// between its turns (each takes the lowest free sequence, the one the conversation had
/// ended in): the history moved to a sequence unused for longer, and its greedy tokens equal
/// the same turn decoded alone.
#[test]
fn a_conversation_stays_cached_while_other_requests_come_between_its_turns() {
    let Some((mut engine, prompts)) = loaded(512, 4) else {
        return;
    };
    let first = [prompts[0].clone(), prompts[1].clone()].concat();
    let (_, answer) = run_alone(&mut engine, 0, first.clone());
    for (handle, other) in [(1, &prompts[2]), (2, &prompts[3]), (3, &prompts[4])] {
        run_alone(&mut engine, handle, other.clone());
    }
    let next = [first.clone(), answer, prompts[5].clone()].concat();
    let (reused, tokens) = run_alone(&mut engine, 4, next.clone());
    assert!(
        reused as usize >= first.len(),
        "reused {reused} of the first turn's {} tokens",
        first.len()
    );
    let solo = loaded(512, 4).unwrap().0.generate_greedy(next, 16).unwrap();
    assert_eq!(solo, tokens);
}
