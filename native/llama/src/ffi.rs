//! The C shim's functions (shim/shim.c): opaque pointers and plain values only.

use std::ffi::c_char;

#[repr(C)]
pub struct Model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Context {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Batch {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Threadpool {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Adapter {
    _private: [u8; 0],
}

extern "C" {
    pub fn mk_backend_init();
    pub fn mk_quiet_logs();
    pub fn mk_model_load(path: *const c_char) -> *mut Model;
    pub fn mk_model_free(model: *mut Model);
    pub fn mk_context_new(
        model: *mut Model,
        n_ctx: u32,
        n_batch: u32,
        n_seq_max: u32,
        n_threads: i32,
    ) -> *mut Context;
    pub fn mk_context_free(ctx: *mut Context);
    pub fn mk_threadpool_attach(ctx: *mut Context, n_threads: i32) -> *mut Threadpool;
    pub fn mk_threadpool_free(pool: *mut Threadpool);
    pub fn mk_n_vocab(model: *const Model) -> i32;
    pub fn mk_n_ctx_train(model: *const Model) -> i32;
    pub fn mk_n_ctx(ctx: *const Context) -> u32;
    pub fn mk_is_eog(model: *const Model, token: i32) -> bool;
    pub fn mk_batch_new(capacity: i32) -> *mut Batch;
    pub fn mk_batch_free(batch: *mut Batch);
    pub fn mk_batch_clear(batch: *mut Batch);
    pub fn mk_batch_add(batch: *mut Batch, token: i32, pos: i32, seq: i32, logits: bool);
    pub fn mk_decode(ctx: *mut Context, batch: *mut Batch) -> i32;
    pub fn mk_logits(ctx: *mut Context, i: i32) -> *const f32;
    pub fn mk_seq_rm(ctx: *mut Context, seq: i32, p0: i32, p1: i32) -> bool;
    pub fn mk_seq_cp(ctx: *mut Context, src: i32, dst: i32, p0: i32, p1: i32);
    pub fn mk_seq_state_size(ctx: *mut Context, seq: i32) -> usize;
    pub fn mk_seq_state_get(ctx: *mut Context, buf: *mut u8, size: usize, seq: i32) -> usize;
    pub fn mk_seq_state_set(ctx: *mut Context, buf: *const u8, size: usize, seq: i32) -> usize;
    pub fn mk_adapter_load(model: *mut Model, path: *const c_char) -> *mut Adapter;
    pub fn mk_adapter_free(adapter: *mut Adapter);
    pub fn mk_set_adapter(ctx: *mut Context, adapter: *mut Adapter);
}
