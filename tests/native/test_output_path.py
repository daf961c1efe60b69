"""The native output path from Python: parity with mlx-lm, stop strings, frames, bad input."""

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.tokenizer_utils import load as load_mlx_tokenizer
from modelkube_native import (
    DuplicateRequestError,
    InvalidArgumentError,
    InvalidUtf8Error,
    OutputPath,
    RequestFinishedError,
    TokenIdError,
    TokenizerFileError,
    TokenizerParseError,
    UnknownRequestError,
    Vocabulary,
)
from tokenizers import Tokenizer

from modelkube_serving.models.builtin import ensure_builtin
from modelkube_serving.services import responses

Row = tuple[int, str, bytes | None, str | None, int, int]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return ensure_builtin("tiny")


@pytest.fixture(scope="module")
def vocab(model_dir: Path) -> Vocabulary:
    return Vocabulary(str(model_dir / "tokenizer.json"))


def run_tokens(
    out: OutputPath, handle: int, tokens: list[int], finish: str = "length"
) -> list[Row]:
    rows: list[Row] = []
    for i, token in enumerate(tokens):
        last = finish if i == len(tokens) - 1 else None
        rows.extend(out.step([(handle, token, last)]))
        if rows and rows[-1][3] is not None:
            break  # a stop string ended it
    return rows


def test_text_matches_the_tokenizers_library(model_dir: Path, vocab: Vocabulary) -> None:
    """The reference is Hugging Face's own decode. (mlx-lm's BPE streaming detokenizer differs
    on purpose in one way, trimming the first leading space, and by a bug in another: byte 0x00
    comes out as "Ā".)"""
    reference = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rng = random.Random(7)
    out = OutputPath(vocab, "tiny")
    for handle in range(100):
        tokens = [rng.randrange(vocab.size) for _ in range(rng.randrange(1, 60))]
        expected = reference.decode(tokens, skip_special_tokens=False)
        out.add(handle, f"r{handle}", chat=True, stream=False, created=0)
        rows = run_tokens(out, handle, tokens)
        assert rows[-1][3] == "length"
        assert rows[-1][1] == expected, tokens
        assert vocab.decode(tokens) == expected


def test_text_matches_mlx_lm_where_it_is_right(model_dir: Path, vocab: Vocabulary) -> None:
    mlx_tokenizer = load_mlx_tokenizer(model_dir)
    rng = random.Random(5)
    for _ in range(50):
        tokens = [rng.randrange(1, vocab.size) for _ in range(rng.randrange(1, 60))]
        tokens = [t for t in tokens if vocab.decode([t]) != "\x00"]
        detok = mlx_tokenizer.detokenizer
        detok.reset()
        for t in tokens:
            detok.add_token(t)
        detok.finalize()
        ours = vocab.decode(tokens)
        assert detok.text == (ours[1:] if ours.startswith(" ") else ours)


def test_streamed_deltas_add_up_to_the_whole_text(vocab: Vocabulary) -> None:
    rng = random.Random(3)
    tokens = [rng.randrange(vocab.size) for _ in range(200)]
    out = OutputPath(vocab, "tiny")
    out.add(1, "a", chat=False, stream=True, created=0)
    streamed = "".join(row[1] for row in run_tokens(out, 1, tokens))
    assert streamed == vocab.decode(tokens)


def encode(model_dir: Path, pieces: list[str]) -> list[int]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [t for piece in pieces for t in tokenizer.encode(piece, add_special_tokens=False).ids]


@pytest.mark.parametrize(
    ("text", "stops", "shown", "finish"),
    [
        ("hello world", [], "hello world", "length"),
        ("hello world", ["wor"], "hello ", "stop"),
        ("hello wo", ["world"], "hello wo", "length"),  # held back, then released at the end
        ("x STOP y END", ["END", "STOP"], "x ", "stop"),  # the earliest match wins
        ("the cat sat", ["cat", "at s"], "the ", "stop"),
    ],
)
def test_stop_strings_cut_the_text_and_finish_with_stop(
    model_dir: Path, vocab: Vocabulary, text: str, stops: list[str], shown: str, finish: str
) -> None:
    tokens = encode(model_dir, [text])
    out = OutputPath(vocab, "tiny")
    out.add(1, "a", chat=True, stream=True, created=0, stops=stops)
    rows = run_tokens(out, 1, tokens)
    assert "".join(r[1] for r in rows) == shown
    assert rows[-1][3] == finish
    assert len(out) == 0


def test_text_that_may_become_a_stop_is_never_emitted_early(
    model_dir: Path, vocab: Vocabulary
) -> None:
    tokens = encode(model_dir, ["one two", " thr", "ee four"])
    out = OutputPath(vocab, "tiny")
    out.add(1, "a", chat=True, stream=True, created=0, stops=["three"])
    emitted = ""
    for row in run_tokens(out, 1, tokens):
        emitted += row[1]
        assert "thr" not in emitted
    assert emitted == "one two "


def test_frames_are_the_openai_chunks_python_would_write(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, "tiny")
    out.add(9, "chatcmpl-1", chat=True, stream=True, created=5, include_usage=True, prompt_tokens=4)
    rows = run_tokens(out, 9, [300, 301])
    frames = b"".join(r[2] or b"" for r in rows).decode()
    payloads = [json.loads(f.removeprefix("data: ")) for f in frames.split("\n\n") if f]
    text = "".join(r[1] for r in rows)
    usage = {
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    expected: list[dict[str, Any]] = [
        responses.chat_chunk("chatcmpl-1", "tiny", 5, {"content": r[1]}, None) for r in rows if r[1]
    ]
    expected.append(responses.chat_chunk("chatcmpl-1", "tiny", 5, {}, "length"))
    expected.append(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 5,
            "model": "tiny",
            "choices": [],
            "usage": usage,
        }
    )
    assert payloads == expected
    assert text == vocab.decode([300, 301])


def test_json_escaping_matches_python(vocab: Vocabulary) -> None:
    from modelkube_serving import sse

    special = [i for i in range(vocab.size) if vocab.decode([i]) in {'"', "\\", "\n", "\t"}]
    assert special
    out = OutputPath(vocab, "m")
    out.add(1, "cmpl-1", chat=False, stream=True, created=1)
    for row in run_tokens(out, 1, special, finish="stop"):
        if row[1]:
            python = sse.frame(responses.text_chunk("cmpl-1", "m", 1, row[1], None))
            assert row[2] is not None
            assert row[2].startswith(python)


def test_one_bad_token_fails_the_step_and_changes_nothing(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, "tiny")
    out.add(1, "good", chat=True, stream=False, created=0)
    out.add(2, "bad", chat=True, stream=False, created=0)
    with pytest.raises(TokenIdError, match="outside the vocabulary") as err:
        out.step([(1, 300, None), (2, vocab.size + 5, None)])
    assert isinstance(err.value, ValueError)
    rows = out.step([(1, 300, "length"), (2, 301, "length")])
    assert [r[4] for r in rows] == [1, 1]  # the failed step counted no token


def lone_continuation_byte(vocab: Vocabulary) -> int:
    return next(i for i in range(vocab.size) if vocab.decode([i]) == "\ufffd")


@pytest.mark.parametrize(
    ("action", "error", "builtin"),
    [
        (lambda o, v: o.step([(42, 1, None)]), UnknownRequestError, KeyError),
        (lambda o, v: o.discard(42), UnknownRequestError, KeyError),
        (lambda o, v: o.step([(7, -1, None)]), TokenIdError, ValueError),
        (lambda o, v: o.step([(7, 1, "eos")]), InvalidArgumentError, ValueError),
        (lambda o, v: o.add(7, "again", chat=True, stream=True, created=0), None, ValueError),
        (lambda o, v: v.decode([lone_continuation_byte(v)], strict=True), None, ValueError),
    ],
)
def test_bad_input_raises_a_specific_error(
    vocab: Vocabulary, action: Any, error: type[Exception] | None, builtin: type[Exception]
) -> None:
    out = OutputPath(vocab, "tiny")
    out.add(7, "r", chat=True, stream=True, created=0)
    with pytest.raises(builtin) as raised:
        action(out, vocab)
    if error is not None:
        assert isinstance(raised.value, error)
    assert str(raised.value)


def test_finished_and_duplicate_requests(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, "tiny")
    out.add(1, "r", chat=True, stream=True, created=0)
    with pytest.raises(DuplicateRequestError):
        out.add(1, "r", chat=True, stream=True, created=0)
    out.step([(1, 300, "length")])
    with pytest.raises(RequestFinishedError, match="already finished"):
        out.step([(1, 300, None)])


def test_strict_mode_reports_invalid_utf8_and_the_process_lives(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, "tiny", strict_utf8=True)
    out.add(1, "r", chat=True, stream=True, created=0)
    with pytest.raises(InvalidUtf8Error, match="invalid UTF-8"):
        out.step([(1, lone_continuation_byte(vocab), None)])
    out.discard(1)
    lenient = OutputPath(vocab, "tiny")
    lenient.add(1, "r", chat=True, stream=False, created=0)
    assert lenient.step([(1, lone_continuation_byte(vocab), "length")])[0][1] == "\ufffd"


def test_tokenizer_files_that_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(TokenizerFileError) as missing:
        Vocabulary(str(tmp_path / "absent.json"))
    assert isinstance(missing.value, OSError)
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": 3}')
    with pytest.raises(TokenizerParseError, match="does not parse"):
        Vocabulary(str(broken))


def test_threads_share_one_output_path(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, "tiny")
    rng = random.Random(11)
    work = {h: [rng.randrange(vocab.size) for _ in range(300)] for h in range(8)}
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(handle: int) -> None:
        try:
            out.add(handle, f"r{handle}", chat=True, stream=True, created=0)
            results[handle] = "".join(r[1] for r in run_tokens(out, handle, work[handle]))
        except BaseException as exc:  # surfaced below, on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(h,)) for h in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {h: vocab.decode(tokens) for h, tokens in work.items()}
    assert len(out) == 0


def sentencepiece_style_tokenizer(path: Path) -> Tokenizer:
    """A BPE with a Metaspace decoder and byte fallback off: the non-byte-level path."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    corpus = [
        "the quick brown fox jumps over the lazy dog",
        "naïve café déjà vu",
        "日本語 テキスト",
    ]
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"])
    tokenizer.train_from_iterator(corpus * 20, trainer)
    tokenizer.save(str(path))
    return tokenizer


def test_other_decoders_stream_through_the_tokenizers_library(tmp_path: Path) -> None:
    reference = sentencepiece_style_tokenizer(tmp_path / "tokenizer.json")
    vocab = Vocabulary(str(tmp_path / "tokenizer.json"))
    out = OutputPath(vocab, "m")
    rng = random.Random(2)
    for handle in range(30):
        tokens = [rng.randrange(vocab.size) for _ in range(rng.randrange(1, 40))]
        out.add(handle, "r", chat=True, stream=True, created=0)
        streamed = "".join(r[1] for r in run_tokens(out, handle, tokens))
        assert streamed == reference.decode(tokens, skip_special_tokens=False), tokens
