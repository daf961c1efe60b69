//! Decode-step time of 16 rows whose sequence ids are consecutive vs every other id (one
//! ubatch vs 16 with a KV stream per sequence). `ubatch_runs GGUF THREADS`.

use std::time::Instant;

use modelkube_llama::{LlamaEngine, Request, Sampling, Settings, BASE};

fn run(gguf: &str, threads: i32, spread: bool) -> f64 {
    let settings = Settings {
        n_ctx_seq: 256,
        n_batch: 512,
        n_seq_max: 32,
        n_threads: threads,
    };
    let mut engine = LlamaEngine::load(std::path::Path::new(gguf), settings).unwrap();
    let n = if spread { 32 } else { 16 };
    for h in 0..n {
        let prompt = vec![1, 2 + h as u32, 3, 4, 5, 6, 7, 8];
        let request = Request {
            handle: h,
            prompt,
            max_tokens: 200,
            sampling: Sampling::greedy(),
            ignore_eos: true,
            constraint: None,
            adapter: BASE,
        };
        engine.add(request).unwrap();
    }
    if spread {
        for h in (1..32).step_by(2) {
            engine.cancel(h);
        }
    }
    engine.step().unwrap(); // the prompts
    engine.step().unwrap();
    let steps = 40;
    let start = Instant::now();
    for _ in 0..steps {
        engine.step().unwrap();
    }
    start.elapsed().as_secs_f64() * 1000.0 / f64::from(steps)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: i32 = args[2].parse().unwrap();
    for round in 0..2 {
        let together = run(&args[1], threads, false);
        let spread = run(&args[1], threads, true);
        println!(
            "round {round}: 16 rows, consecutive ids {together:.1} ms/step; every other id {spread:.1} ms/step ({:.2}x)",
            spread / together
        );
    }
}
