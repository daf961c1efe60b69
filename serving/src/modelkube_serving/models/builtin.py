"""Built-in models: real mlx-lm architectures with seeded random weights.

`builtin://tiny` and `builtin://small` are created offline and deterministically on
first use, in the Hugging Face layout that `mlx_lm.load` reads, and cached under
`~/.cache/modelkube/models/<name>-v<version>/`.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from modelkube_serving.models.corpus import build_corpus

# Bump when the recipe changes so cached copies are rebuilt, never reused stale.
RECIPE_VERSION = 1

IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    context_length: int
    seed: int = 0


BUILTINS: dict[str, BuiltinSpec] = {
    "tiny": BuiltinSpec("tiny", 1024, 256, 4, 4, 2, 704, 2048),
    "small": BuiltinSpec("small", 4096, 768, 12, 12, 12, 3072, 2048),
}

Progress = Callable[[str], None]


def cache_root() -> Path:
    base = os.environ.get("MODELKUBE_CACHE_DIR") or str(Path.home() / ".cache" / "modelkube")
    return Path(base)


def builtin_path(name: str) -> Path:
    return cache_root() / "models" / f"{name}-v{RECIPE_VERSION}"


def is_builtin_dir(path: Path) -> bool:
    """Whether `path` is the directory of a random-weight built-in (of this recipe)."""
    return any(path == builtin_path(name) for name in BUILTINS)


def ensure_builtin(name: str, progress: Progress | None = None) -> Path:
    """Return the directory of built-in model `name`, creating it on first use."""
    if name not in BUILTINS:
        known = ", ".join(f"builtin://{n}" for n in BUILTINS)
        raise ValueError(f"unknown built-in model builtin://{name} (known: {known})")
    target = builtin_path(name)
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so a crash never leaves half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _write_model(BUILTINS[name], staging, progress or (lambda _msg: None))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (progress or (lambda _msg: None))(f"builtin://{name}: ready at {target}")
    return target


def _write_model(spec: BuiltinSpec, out: Path, progress: Progress) -> None:
    progress(f"builtin://{spec.name}: training a byte-level BPE tokenizer")
    vocab_size = _write_tokenizer(spec, out)
    progress(
        f"builtin://{spec.name}: initialising {spec.num_layers} llama layers (seed {spec.seed})"
    )
    config = _model_config(spec, vocab_size)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _write_weights(config, spec.seed, _lone_high_bytes(out), out)


def _model_config(spec: BuiltinSpec, vocab_size: int) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": spec.context_length,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "bos_token_id": None,
        "eos_token_id": 1,
    }


def _write_tokenizer(spec: BuiltinSpec, out: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=[EOS, IM_END, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(build_corpus(spec.seed, 4000), trainer=trainer)
    tokenizer.save(str(out / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": IM_END,
        "pad_token": EOS,
        "bos_token": None,
        "unk_token": None,
        "model_max_length": spec.context_length,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    size: int = tokenizer.get_vocab_size()
    return size


def _lone_high_bytes(out: Path) -> list[int]:
    """Ids of tokens that are a single non-ASCII byte: alone they are invalid UTF-8."""
    vocab: dict[str, int] = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    return [i for tok, i in vocab.items() if len(tok) == 1 and ord(tok) > 0x7E]


def _write_weights(config: dict[str, Any], seed: int, damped: list[int], out: Path) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    # GPT-2 style init keeps logits in a sane range, so sampling is not one-hot.
    flat = cast(list[tuple[str, mx.array]], tree_flatten(model.parameters()))
    params = {
        key: (mx.random.normal(value.shape) * 0.02 if value.ndim > 1 else value)
        for key, value in flat
    }
    # Tied embeddings: shrinking these rows makes a random model rarely emit lone bytes,
    # so its output reads as words instead of U+FFFD; the input side still encodes them.
    scale = mx.ones((config["vocab_size"], 1))
    scale[mx.array(damped)] = 0.05
    params["model.embed_tokens.weight"] = params["model.embed_tokens.weight"] * scale
    mx.save_safetensors(str(out / "model.safetensors"), params, metadata={"format": "mlx"})
