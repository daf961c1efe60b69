//! The Python binding of `modelkube-core`: thin wrappers, one error mapping, one GIL helper.
//!
//! Free threads: `gil_used = false` holds because every pyclass is `frozen` (no `&mut self`,
//! so PyO3 never needs a per-object borrow flag) and holds only `Sync` state, which PyO3
//! checks at compile time: there is no `unsafe impl Send`/`Sync` in this crate or the core.
//! Each struct says where its sharing is decided. A Rust lock is never held while calling
//! into Python, so no thread waits for one while another waits for it (and for the GIL, on a
//! GIL build). Tested under parallel callers on a free-threaded CPython (tests/freethreaded).

mod admission;
mod errors;
mod front;
mod gate;
mod gil;
mod grammar;
mod llama;
mod loop_bridge;
mod output;
mod prefix;
mod relay_body;
mod upstream;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<output::Vocabulary>()?;
    m.add_class::<output::FinishReason>()?;
    m.add_class::<output::RenderSpec>()?;
    m.add_class::<output::StepResult>()?;
    m.add_class::<output::OutputPath>()?;
    m.add_function(wrap_pyfunction!(output::error_frame, m)?)?;
    m.add_class::<grammar::GrammarCompiler>()?;
    m.add_class::<grammar::Grammar>()?;
    m.add_class::<grammar::GrammarMatcher>()?;
    m.add_class::<llama::LlamaEngine>()?;
    m.add_class::<admission::Admission>()?;
    m.add_class::<prefix::PrefixIndex>()?;
    m.add_class::<upstream::UpstreamClient>()?;
    m.add_class::<upstream::UpstreamResponse>()?;
    m.add_class::<upstream::UpstreamStream>()?;
    m.add_class::<loop_bridge::LoopHub>()?;
    m.add_class::<front::HttpFront>()?;
    m.add_class::<gate::Gate>()?;
    Ok(())
}
