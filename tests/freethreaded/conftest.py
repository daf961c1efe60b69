"""Shared pieces of the thread tests: a byte-level vocabulary written on the spot (no model, no
mlx, so the same tests run on the free-threaded interpreter) and a loopback upstream."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_upstream import FaultUpstream


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table, the alphabet of byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_byte_vocabulary(path: Path) -> Path:
    """One token per byte, then a few multi-byte words: every byte string is some token row."""
    table = _bytes_to_unicode()
    vocab = {table[b]: b + 1 for b in range(256)}
    for word in ("Ġhello", "Ġworld", "Ġthreads"):
        vocab[word] = len(vocab) + 1
    special = {"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False}
    special |= {"rstrip": False, "normalized": False, "special": True}
    vocab["<|endoftext|>"] = 0
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    document: dict[str, object] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special],
        "normalizer": None,
        "pre_tokenizer": level | {"use_regex": True},
        "post_processor": level,
        "decoder": level | {"use_regex": True},
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "dropout": None},
    }
    target = path / "tokenizer.json"
    target.write_text(json.dumps(document))
    return target


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_byte_vocabulary(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    server = FaultUpstream().start()
    yield server
    server.stop()
