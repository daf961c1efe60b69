//! llama.cpp inside modelkube's core: a GGUF model, its context, and a continuous-batching
//! decode loop with per-request sampling. No Python here.

mod engine;
mod ffi;
mod sample;

pub use engine::{
    Choice, Constraint, Emitted, Finish, LlamaEngine, LlamaError, Request, Settings, BASE,
};
pub use sample::{argmax, Logprobs, Sampled, Sampler, Sampling};
