"""The random-weight built-ins written out as GGUF files, so llama.cpp serves them too.

What llama.cpp's convert_hf_to_gguf.py does for a llama model (LlamaModel and
`_set_vocab_gpt2`), done with the `gguf` package's writer and numpy instead of torch and
transformers: the same tensor names, q/k rows permuted to llama.cpp's rope layout, the
hyperparameters under `llama.*`, and the byte-level BPE vocabulary and merges from
tokenizer.json. Weights stay float32, as MLX serves them, so both engines compute the same
model. The file is written beside the built-in (`model-gguf-v<CONVERTER_VERSION>.gguf`): the
built-in's directory name carries its own recipe version, so the pair is the cache key.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelkube_serving.models.errors import UnsupportedModelError

# Bump when the conversion changes so a cached file is rewritten, never reused stale.
CONVERTER_VERSION = 1

_PER_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_LEVEL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# gguf.TokenType's values (llama.cpp's llama_token_type), kept here for the pure functions.
_NORMAL, _CONTROL = 1, 3


def gguf_file(model_dir: Path) -> Path:
    return model_dir / f"model-gguf-v{CONVERTER_VERSION}.gguf"


def gguf_tensor_name(name: str) -> str:
    """llama.cpp's name of Hugging Face llama tensor `name`."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    prefix, _, rest = name.partition(".layers.")
    layer, _, module = rest.partition(".")
    module, _, part = module.rpartition(".")
    if prefix == "model" and layer.isdigit() and module in _PER_LAYER:
        return f"blk.{layer}.{_PER_LAYER[module]}.{part}"
    raise UnsupportedModelError(f"tensor {name} has no llama.cpp name")


def permute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's per-head interleaving of a q or k projection's rows (LlamaModel.permute):
    the inverse of models.gguf.unpermute_rows."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(weights: dict[str, np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The HF weights under llama.cpp's names, q and k permuted, all float32."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        value = np.asarray(value, dtype=np.float32)
        if ".self_attn.q_proj." in name:
            value = permute_rows(value, config["num_attention_heads"])
        elif ".self_attn.k_proj." in name:
            value = permute_rows(value, config["num_key_value_heads"])
        out[gguf_tensor_name(name)] = value
    return out


def vocabulary(tokenizer: dict[str, Any]) -> tuple[list[str], list[int], list[str]]:
    """Tokens by id, their types, and the merges as "a b" strings, from tokenizer.json."""
    model = tokenizer["model"]
    if model.get("type") != "BPE":
        raise UnsupportedModelError(f"tokenizer {model.get('type')} is not byte-level BPE")
    by_id = {i: tok for tok, i in model["vocab"].items()}
    special = set()
    for added in tokenizer.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        if added.get("special"):
            special.add(added["id"])
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(max(by_id) + 1)]
    types = [_CONTROL if i in special else _NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, types, merges


def _token_id(tokens: list[str], text: str | None) -> int | None:
    return tokens.index(text) if text in tokens else None


def write_gguf(model_dir: Path, out: Path) -> None:
    """Write the GGUF file of HF-layout llama model `model_dir` to `out`."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise UnsupportedModelError(f"{model_dir}: only llama models are written as GGUF")
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokens, types, merges = vocabulary(json.loads((model_dir / "tokenizer.json").read_text()))
    heads = config["num_attention_heads"]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model_dir.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # tokenizers' ByteLevel pre-tokenizer: GPT-2's regex
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = _token_id(tokens, tok_config.get("eos_token"))
    pad = _token_id(tokens, tok_config.get("pad_token"))
    if eos is not None:
        writer.add_eos_token_id(eos)
    if pad is not None:
        writer.add_pad_token_id(pad)
        # llama.cpp wants a BOS id even when none is added; GPT-2's is its <|endoftext|>.
        writer.add_bos_token_id(pad)
    writer.add_add_bos_token(False)
    if template := tok_config.get("chat_template"):
        writer.add_chat_template(template)
    weights = load_file(str(model_dir / "model.safetensors"))
    for name, value in gguf_tensors(weights, config).items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def ensure_hf_gguf(model_dir: Path) -> Path:
    """The GGUF file of HF-layout llama model `model_dir`, written beside it on first use."""
    target = gguf_file(model_dir)
    if target.is_file():
        return target
    # Written aside and renamed into place, so a crash never leaves half a file.
    fd, staging = tempfile.mkstemp(prefix=".model-gguf-", suffix=".tmp", dir=model_dir)
    os.close(fd)
    try:
        write_gguf(model_dir, Path(staging))
        Path(staging).replace(target)
    finally:
        Path(staging).unlink(missing_ok=True)
    return target
