//! modelkube's runtime core: the hot paths of the serving runtime, in pure Rust.
//!
//! Nothing here knows about Python; the `modelkube-native` crate binds it.

pub mod admission;
pub mod detok;
pub mod error;
pub mod grammar;
pub mod output;
pub mod prefix;
pub mod ratelimit;
pub mod render;
pub mod stops;
pub mod toolcalls;
pub mod upstream;

pub use error::{CoreError, CoreResult};
