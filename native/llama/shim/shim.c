// A narrow C surface over llama.h: plain arguments in, opaque pointers out, so the Rust side
// never mirrors llama.cpp's parameter structs (whose layout changes between versions).
#include <stdlib.h>
#include "llama.h"
#include "ggml-cpu.h"

void mk_backend_init(void) {
    llama_backend_init();
}

static void mk_quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) level; (void) text; (void) data;
}

void mk_quiet_logs(void) { llama_log_set(mk_quiet, NULL); }

struct llama_model * mk_model_load(const char * path) {
    struct llama_model_params p = llama_model_default_params();
    p.n_gpu_layers = 0;
    return llama_model_load_from_file(path, p);
}

void mk_model_free(struct llama_model * model) { llama_model_free(model); }

struct llama_context * mk_context_new(struct llama_model * model, uint32_t n_ctx, uint32_t n_batch,
                                      uint32_t n_seq_max, int32_t n_threads) {
    struct llama_context_params p = llama_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_ubatch = n_batch;
    p.n_seq_max = n_seq_max;
    p.n_threads = n_threads;
    p.n_threads_batch = n_threads;
    p.no_perf = true;
    // A KV stream of its own per sequence (n_ctx / n_seq_max cells each), as llama-server runs
    // with --parallel: a unified cache changes the attention's numerics with the batch, and
    // greedy outputs then drift from the same prompt decoded alone.
    p.kv_unified = false;
    return llama_init_from_model(model, p);
}

void mk_context_free(struct llama_context * ctx) { llama_free(ctx); }

// One pool of compute threads for the context's life, as llama-server attaches: without it,
// ggml makes and joins a disposable pool on every decode (thread creation on each step).
struct ggml_threadpool * mk_threadpool_attach(struct llama_context * ctx, int32_t n_threads) {
    struct ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
    struct ggml_threadpool * pool = ggml_threadpool_new(&p);
    if (pool != NULL) llama_attach_threadpool(ctx, pool, NULL);
    return pool;
}

void mk_threadpool_free(struct ggml_threadpool * pool) { ggml_threadpool_free(pool); }

int32_t mk_n_vocab(const struct llama_model * model) {
    return llama_vocab_n_tokens(llama_model_get_vocab(model));
}

int32_t mk_n_ctx_train(const struct llama_model * model) { return llama_model_n_ctx_train(model); }

uint32_t mk_n_ctx(const struct llama_context * ctx) { return llama_n_ctx(ctx); }

bool mk_is_eog(const struct llama_model * model, llama_token token) {
    return llama_vocab_is_eog(llama_model_get_vocab(model), token);
}

struct llama_batch * mk_batch_new(int32_t capacity) {
    struct llama_batch * batch = malloc(sizeof(struct llama_batch));
    if (batch == NULL) return NULL;
    *batch = llama_batch_init(capacity, 0, 1);
    return batch;
}

void mk_batch_free(struct llama_batch * batch) {
    llama_batch_free(*batch);
    free(batch);
}

void mk_batch_clear(struct llama_batch * batch) { batch->n_tokens = 0; }

void mk_batch_add(struct llama_batch * batch, llama_token token, llama_pos pos, llama_seq_id seq,
                  bool logits) {
    int32_t i = batch->n_tokens;
    batch->token[i] = token;
    batch->pos[i] = pos;
    batch->n_seq_id[i] = 1;
    batch->seq_id[i][0] = seq;
    batch->logits[i] = logits;
    batch->n_tokens = i + 1;
}

int32_t mk_decode(struct llama_context * ctx, struct llama_batch * batch) {
    return llama_decode(ctx, *batch);
}

const float * mk_logits(struct llama_context * ctx, int32_t i) { return llama_get_logits_ith(ctx, i); }

bool mk_seq_rm(struct llama_context * ctx, llama_seq_id seq, llama_pos p0, llama_pos p1) {
    return llama_memory_seq_rm(llama_get_memory(ctx), seq, p0, p1);
}

void mk_seq_cp(struct llama_context * ctx, llama_seq_id src, llama_seq_id dst, llama_pos p0,
               llama_pos p1) {
    llama_memory_seq_cp(llama_get_memory(ctx), src, dst, p0, p1);
}

// A sequence's cells through its per-sequence state, which holds only the cells it uses;
// llama_memory_seq_cp between the streams of a non-unified cache copies the whole stream
// (n_ctx_seq cells of every layer) instead. The caller owns the buffer and keeps it between
// copies: a fresh one of a few MB costs its page faults on every copy.
size_t mk_seq_state_size(struct llama_context * ctx, llama_seq_id seq) {
    return llama_state_seq_get_size(ctx, seq);
}

size_t mk_seq_state_get(struct llama_context * ctx, uint8_t * buf, size_t size, llama_seq_id seq) {
    return llama_state_seq_get_data(ctx, buf, size, seq);
}

size_t mk_seq_state_set(struct llama_context * ctx, const uint8_t * buf, size_t size,
                        llama_seq_id seq) {
    return llama_state_seq_set_data(ctx, buf, size, seq);
}

// LoRA adapters (GGUF LoRA files): loaded against the model, set on the context per decode.
struct llama_adapter_lora * mk_adapter_load(struct llama_model * model, const char * path) {
    return llama_adapter_lora_init(model, path);
}

void mk_adapter_free(struct llama_adapter_lora * adapter) { llama_adapter_lora_free(adapter); }

// One adapter at scale 1 (the GGUF file's alpha carries mlx-lm's scale), or none when null.
// llama.cpp compares with what is set and re-plans its graph only on a change.
void mk_set_adapter(struct llama_context * ctx, struct llama_adapter_lora * adapter) {
    float scale = 1.0f;
    if (adapter == NULL) {
        llama_set_adapters_lora(ctx, NULL, 0, NULL);
    } else {
        llama_set_adapters_lora(ctx, &adapter, 1, &scale);
    }
}
