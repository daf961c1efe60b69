"""A Hugging Face `tokenizer.json` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.

GGUF keeps the vocabulary, the merges, each token's type and the special ids, but not the
pre-tokenizer itself: `tokenizer.ggml.pre` names it, and llama.cpp maps that name to its
split regexes (llama-vocab.cpp). The table below mirrors that mapping for the pre-tokenizers
we rebuild; any other name is refused rather than guessed, since a wrong split gives a
model token ids it was never trained on.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelkube_serving.models.errors import UnsupportedModelError

# llama.cpp's token types (llama_token_type): 3 is a control token, 4 a user-defined one.
CONTROL, USER_DEFINED = 3, 4

# GPT-2's split, which llama.cpp uses for "gpt2" and, after splitting digits, "smollm".
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_SPLIT = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

# Texts of the tokens llama.cpp treats as end of generation besides eos/eot.
_END_OF_GENERATION = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
}


@dataclass(frozen=True)
class PreTokenizer:
    split: str
    individual_digits: bool = False
    # llama.cpp (and the HF originals) look a whole word up in the vocabulary first.
    ignore_merges: bool = False


PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "gpt2": PreTokenizer(_GPT2_SPLIT),
    "gpt-2": PreTokenizer(_GPT2_SPLIT),  # llama.cpp's name for it (what its converter writes)
    "smollm": PreTokenizer(_GPT2_SPLIT, individual_digits=True),
    "llama-bpe": PreTokenizer(_LLAMA3_SPLIT, ignore_merges=True),
    "llama3": PreTokenizer(_LLAMA3_SPLIT, ignore_merges=True),
    "qwen2": PreTokenizer(_QWEN2_SPLIT),
}


@dataclass(frozen=True)
class RebuiltTokenizer:
    tokenizer_json: str
    tokenizer_config: dict[str, Any]
    bos_token_id: int | None
    eos_token_ids: list[int]


def rebuild_tokenizer(meta: Mapping[str, Any], context_length: int) -> RebuiltTokenizer:
    """The tokenizer files of a GGUF model; `meta` holds plain Python values."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        what = "a SentencePiece vocabulary" if kind == "llama" else "its vocabulary"
        raise UnsupportedModelError(
            f"tokenizer.ggml.model {kind!r} ({what}) is not supported: "
            "only byte-level BPE ('gpt2') vocabularies are rebuilt"
        )
    pre_name = meta.get("tokenizer.ggml.pre", "gpt2")
    pre = PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        known = ", ".join(sorted(PRE_TOKENIZERS))
        raise UnsupportedModelError(
            f"pre-tokenizer {pre_name!r} (tokenizer.ggml.pre) is not supported (known: {known})"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges: list[str] = meta.get("tokenizer.ggml.merges") or []
    bos = _optional_id(meta, "tokenizer.ggml.bos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    tokenizer = _tokenizer(tokens, types, merges, pre, bos if add_bos else None)
    eos_ids = _end_of_generation(meta, tokens, types)

    def text(key: str) -> str | None:
        token_id = _optional_id(meta, key)
        return tokens[token_id] if token_id is not None and token_id < len(tokens) else None

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": text("tokenizer.ggml.bos_token_id"),
        "eos_token": text("tokenizer.ggml.eos_token_id"),
        "unk_token": text("tokenizer.ggml.unknown_token_id"),
        "pad_token": text("tokenizer.ggml.padding_token_id"),
        "add_bos_token": add_bos,
        "model_max_length": context_length,
        "clean_up_tokenization_spaces": False,
    }
    if isinstance(meta.get("tokenizer.chat_template"), str):
        config["chat_template"] = meta["tokenizer.chat_template"]
    return RebuiltTokenizer(tokenizer, config, bos, eos_ids)


def _optional_id(meta: Mapping[str, Any], key: str) -> int | None:
    value = meta.get(key)
    return int(value) if value is not None else None


def _end_of_generation(meta: Mapping[str, Any], tokens: list[str], types: list[int]) -> list[int]:
    ids = [
        token_id
        for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
        if (token_id := _optional_id(meta, key)) is not None
    ]
    ids += [
        i
        for i, (tok, kind) in enumerate(zip(tokens, types, strict=True))
        if kind == CONTROL and tok in _END_OF_GENERATION
    ]
    return sorted(set(ids))


def _tokenizer(
    tokens: list[str], types: list[int], merges: list[str], pre: PreTokenizer, bos: int | None
) -> str:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [_merge(m) for m in merges]
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=pairs, ignore_merges=pre.ignore_merges, fuse_unk=False)
    )
    steps: list[Any] = []
    if pre.individual_digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    if pre.split == _GPT2_SPLIT:
        # ByteLevel's own regex is GPT-2's: the HF originals are written this way.
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    else:
        steps.append(pre_tokenizers.Split(Regex(pre.split), behavior="isolated", invert=False))
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()
    if bos is not None:
        first = tokens[bos]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{first} $A", pair=f"{first} $A $B", special_tokens=[(first, bos)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # Control tokens are matched whole in text and skipped when decoding with
    # skip_special_tokens; user-defined ones are matched whole but kept.
    typed = list(zip(tokens, types, strict=True))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in typed if k == CONTROL]
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in typed if k == USER_DEFINED]
    )
    if tokenizer.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise UnsupportedModelError("the GGUF vocabulary holds duplicate tokens")
    result: str = tokenizer.to_str()
    return result


def _merge(text: str) -> tuple[str, str]:
    left, sep, right = text.partition(" ")
    if not sep:
        raise UnsupportedModelError(f"malformed merge {text!r} in tokenizer.ggml.merges")
    return left, right
