"""The native output path from Python: parity with mlx-lm, stop strings, the rendered chunks
and bodies (checked against the official `openai` types), logprobs, special tokens, bad input."""

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.tokenizer_utils import load as load_mlx_tokenizer
from modelkube_native import (
    DuplicateRequestError,
    FinishReason,
    InvalidArgumentError,
    InvalidUtf8Error,
    OutputPath,
    RenderSpec,
    RequestFinishedError,
    StepResult,
    TokenIdError,
    TokenizerFileError,
    TokenizerParseError,
    UnknownRequestError,
    Vocabulary,
    error_frame,
)
from openai.types import Completion
from openai.types.chat import ChatCompletion
from tokenizers import Tokenizer

from modelkube_serving.models.builtin import ensure_builtin
from tests.openai_wire import chat_chunks, sse_payloads, text_chunks

STOP, LENGTH = FinishReason.STOP, FinishReason.LENGTH
Logprobs = tuple[float, list[int], list[float]]


def spec(rid: str = "r", *, chat: bool = True, stream: bool = True, **kw: Any) -> RenderSpec:
    return RenderSpec(rid, "tiny", chat=chat, stream=stream, created=5, **kw)


def payloads(rows: list[StepResult], start: bytes = b"") -> list[Any]:
    """The JSON of every SSE data frame, [DONE] as the string."""
    return sse_payloads(start + b"".join(r.data or b"" for r in rows))


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return ensure_builtin("tiny")


@pytest.fixture(scope="module")
def vocab(model_dir: Path) -> Vocabulary:
    return Vocabulary(str(model_dir / "tokenizer.json"))


def run_tokens(
    out: OutputPath,
    handle: int,
    tokens: list[int],
    finish: FinishReason = LENGTH,
    logprobs: list[Logprobs] | None = None,
) -> list[StepResult]:
    rows: list[StepResult] = []
    for i, token in enumerate(tokens):
        last = finish if i == len(tokens) - 1 else None
        lp = logprobs[i] if logprobs else None
        rows.extend(out.step([(handle, token, last, lp)]))
        if rows and rows[-1].finish is not None:
            break  # a stop string ended it
    return rows


def test_text_matches_the_tokenizers_library(model_dir: Path, vocab: Vocabulary) -> None:
    """The reference is Hugging Face's own decode, special tokens skipped or kept. (mlx-lm's
    BPE streaming detokenizer differs on purpose in one way, trimming the first leading space,
    and by a bug in another: byte 0x00 comes out as "Ā".)"""
    reference = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rng = random.Random(7)
    out = OutputPath(vocab)
    for handle in range(100):
        tokens = [rng.randrange(vocab.size) for _ in range(rng.randrange(1, 60))]
        skip = handle % 2 == 0
        expected = reference.decode(tokens, skip_special_tokens=skip)
        out.add(handle, spec(f"r{handle}", stream=False), skip_special_tokens=skip)
        rows = run_tokens(out, handle, tokens)
        assert rows[-1].finish == LENGTH
        assert rows[-1].text == expected, tokens
        assert vocab.decode(tokens, skip_special_tokens=skip) == expected


def special_id(tokenizer: Tokenizer) -> int:
    special = tokenizer.token_to_id("<|endoftext|>")
    assert special is not None
    return special


def test_special_tokens_are_not_text_unless_asked(model_dir: Path, vocab: Vocabulary) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokens = [*encode(model_dir, ["hello"]), special_id(tokenizer)]
    out = OutputPath(vocab)
    out.add(1, spec(stream=False))
    out.add(2, spec(stream=False), skip_special_tokens=False)
    assert run_tokens(out, 1, tokens)[-1].text == "hello"
    assert run_tokens(out, 2, tokens)[-1].text == "hello<|endoftext|>"
    assert vocab.decode(tokens) == "hello"


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
        ours = vocab.decode(tokens, skip_special_tokens=False)
        assert detok.text == (ours[1:] if ours.startswith(" ") else ours)


def test_streamed_deltas_add_up_to_the_whole_text(vocab: Vocabulary) -> None:
    rng = random.Random(3)
    tokens = [rng.randrange(vocab.size) for _ in range(200)]
    out = OutputPath(vocab)
    out.add(1, spec(chat=False))
    streamed = "".join(row.text for row in run_tokens(out, 1, tokens))
    assert streamed == vocab.decode(tokens)


def encode(model_dir: Path, pieces: list[str]) -> list[int]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [t for piece in pieces for t in tokenizer.encode(piece, add_special_tokens=False).ids]


@pytest.mark.parametrize(
    ("text", "stops", "shown", "finish"),
    [
        ("hello world", [], "hello world", LENGTH),
        ("hello world", ["wor"], "hello ", STOP),
        ("hello wo", ["world"], "hello wo", LENGTH),  # held back, then released at the end
        ("x STOP y END", ["END", "STOP"], "x ", STOP),  # the earliest match wins
        ("the cat sat", ["cat", "at s"], "the ", STOP),
    ],
)
def test_stop_strings_cut_the_text_and_finish_with_stop(
    model_dir: Path,
    vocab: Vocabulary,
    text: str,
    stops: list[str],
    shown: str,
    finish: FinishReason,
) -> None:
    tokens = encode(model_dir, [text])
    out = OutputPath(vocab)
    out.add(1, spec(), stops=stops)
    rows = run_tokens(out, 1, tokens)
    assert "".join(r.text for r in rows) == shown
    assert rows[-1].finish == finish
    assert len(out) == 0


def test_text_that_may_become_a_stop_is_never_emitted_early(
    model_dir: Path, vocab: Vocabulary
) -> None:
    tokens = encode(model_dir, ["one two", " thr", "ee four"])
    out = OutputPath(vocab)
    out.add(1, spec(), stops=["three"])
    emitted = ""
    for row in run_tokens(out, 1, tokens):
        emitted += row.text
        assert "thr" not in emitted
    assert emitted == "one two "


def test_a_chat_stream_is_openai_chunks_then_done(vocab: Vocabulary) -> None:
    render = spec("chatcmpl-1", include_usage=True)
    out = OutputPath(vocab)
    out.add(9, render, prompt_tokens=4, cached_tokens=1)
    rows = run_tokens(out, 9, [300, 301])
    chunks = chat_chunks(payloads(rows, render.start()))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        vocab.decode([300, 301])
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert all(c.id == "chatcmpl-1" and c.created == 5 and c.model == "tiny" for c in chunks)
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 2, 6)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 1
    assert [r.finish for r in rows] == [None] * (len(rows) - 1) + [LENGTH]


def test_a_text_stream_opens_with_no_role_chunk_and_has_no_usage_unless_asked(
    vocab: Vocabulary,
) -> None:
    render = spec("cmpl-1", chat=False)
    assert render.start() == b""
    out = OutputPath(vocab)
    out.add(1, render)
    chunks = text_chunks(payloads(run_tokens(out, 1, [300, 301, 302])))
    assert all(c.choices and c.usage is None and c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def logprobs_for(tokens: list[int], top: int) -> list[Logprobs]:
    """Made-up logprobs, distinct per token, with `top` alternatives in falling order."""
    return [
        (-0.125 * (i + 1), [t, (t + 1) % 1000, (t + 2) % 1000][:top], [-0.1, -1.5, -2.25][:top])
        for i, t in enumerate(tokens)
    ]


def test_chat_logprob_chunks_validate_and_agree_with_the_body(
    model_dir: Path, vocab: Vocabulary
) -> None:
    tokens = encode(model_dir, ["naïve café, one two"])
    lps = logprobs_for(tokens, 2)
    out = OutputPath(vocab)
    out.add(1, spec(logprobs=True, top_logprobs=2))
    out.add(2, spec(stream=False, logprobs=True, top_logprobs=2))
    chunks = chat_chunks(payloads(run_tokens(out, 1, tokens, logprobs=lps)))
    streamed = [
        item
        for c in chunks
        for item in (c.choices[0].logprobs.content or [] if c.choices[0].logprobs else [])
    ]
    (last,) = [r for r in run_tokens(out, 2, tokens, logprobs=lps) if r.data]
    assert last.data is not None
    body = ChatCompletion.model_validate_json(last.data)
    choice = body.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert streamed == choice.logprobs.content
    assert [i.logprob for i in streamed] == [lp for lp, _, _ in lps]
    assert b"".join(bytes(i.bytes or []) for i in streamed).decode() == choice.message.content
    assert all(len(i.top_logprobs) == 2 and i.top_logprobs[1].logprob == -1.5 for i in streamed)
    assert streamed[0].top_logprobs[0].token == vocab.decode([tokens[0]])


def test_completion_text_offsets_point_into_the_text_streamed_or_not(
    model_dir: Path, vocab: Vocabulary
) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    special = special_id(tokenizer)
    tokens = [*encode(model_dir, ["déjà vu"]), special, *encode(model_dir, [" 日本語 end"])]
    lps = logprobs_for(tokens, 1)
    out = OutputPath(vocab)
    out.add(1, spec(chat=False, logprobs=True, top_logprobs=1))
    out.add(2, spec(chat=False, stream=False, logprobs=True, top_logprobs=1))
    chunks = text_chunks(payloads(run_tokens(out, 1, tokens, logprobs=lps)))
    rows = run_tokens(out, 2, tokens, logprobs=lps)
    assert rows[-1].data is not None
    body = Completion.model_validate_json(rows[-1].data)
    text, logprobs = body.choices[0].text, body.choices[0].logprobs
    assert logprobs is not None and logprobs.text_offset is not None
    assert text == "".join(c.choices[0].text for c in chunks) == "déjà vu 日本語 end"
    streamed_offsets = [
        o for c in chunks if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset or []
    ]
    assert streamed_offsets == logprobs.text_offset
    assert len(logprobs.text_offset) == len(tokens)
    # Each token that is whole characters starts where its text is found in the returned text.
    for offset, token in zip(logprobs.text_offset, tokens, strict=True):
        piece = vocab.decode([token])
        if piece and "\ufffd" not in piece:
            assert text[offset : offset + len(piece)] == piece
    assert logprobs.text_offset == sorted(logprobs.text_offset)
    assert logprobs.tokens and "<|endoftext|>" in logprobs.tokens  # a token, though no text


def test_a_stop_string_keeps_its_tokens_logprobs_out(model_dir: Path, vocab: Vocabulary) -> None:
    tokens = encode(model_dir, ["one two three four"])
    out = OutputPath(vocab)
    out.add(1, spec(chat=False, stream=False, logprobs=True), stops=[" three"])
    rows = run_tokens(out, 1, tokens, logprobs=logprobs_for(tokens, 0))
    assert rows[-1].finish == STOP and rows[-1].data is not None
    choice = Completion.model_validate_json(rows[-1].data).choices[0]
    assert choice.text == "one two" and choice.logprobs and choice.logprobs.tokens
    assert "".join(choice.logprobs.tokens) == "one two"
    assert choice.logprobs.top_logprobs == [{}] * len(choice.logprobs.tokens)


def test_bodies_that_asked_no_logprobs_say_null(vocab: Vocabulary) -> None:
    out = OutputPath(vocab)
    out.add(1, spec("chatcmpl-2", stream=False), prompt_tokens=3)
    rows = run_tokens(out, 1, [300, 301, 302])
    assert [r.data is None for r in rows] == [True] * (len(rows) - 1) + [False]
    assert rows[-1].data is not None
    body = json.loads(rows[-1].data)
    ChatCompletion.model_validate(body)
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": rows[-1].text,
        "refusal": None,
    }
    assert body["usage"]["total_tokens"] == 6


def test_error_frames_are_openai_error_bodies() -> None:
    frame = error_frame('it "broke"', "server_error", code="engine_error")
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert json.loads(frame[6:]) == {
        "error": {
            "message": 'it "broke"',
            "type": "server_error",
            "param": None,
            "code": "engine_error",
        }
    }


def test_json_escaping_matches_python(vocab: Vocabulary) -> None:
    special = [i for i in range(vocab.size) if vocab.decode([i]) in {'"', "\\", "\n", "\t"}]
    assert special
    out = OutputPath(vocab)
    out.add(1, spec("cmpl-1", chat=False))
    for row in run_tokens(out, 1, special, finish=STOP):
        if row.text:
            python = json.dumps(row.text, ensure_ascii=False).encode()
            assert row.data is not None
            assert b'"text":' + python + b',"logprobs":null' in row.data


def test_one_bad_token_fails_the_step_and_changes_nothing(vocab: Vocabulary) -> None:
    out = OutputPath(vocab)
    out.add(1, spec("good", stream=False))
    out.add(2, spec("bad", stream=False))
    with pytest.raises(TokenIdError, match="outside the vocabulary") as err:
        out.step([(1, 300, None, None), (2, vocab.size + 5, None, None)])
    assert isinstance(err.value, ValueError)
    rows = out.step([(1, 300, LENGTH, None), (2, 301, LENGTH, None)])
    assert [r.completion_tokens for r in rows] == [1, 1]  # the failed step counted no token


def lone_continuation_byte(vocab: Vocabulary) -> int:
    return next(i for i in range(vocab.size) if vocab.decode([i]) == "\ufffd")


@pytest.mark.parametrize(
    ("action", "error", "builtin"),
    [
        (lambda o, v: o.step([(42, 1, None, None)]), UnknownRequestError, KeyError),
        (lambda o, v: o.discard(42), UnknownRequestError, KeyError),
        (lambda o, v: o.step([(7, -1, None, None)]), TokenIdError, ValueError),
        (lambda o, v: o.step([(7, 1, None, (-1.0, [v.size], [-1.0]))]), TokenIdError, ValueError),
        (lambda o, v: o.step([(7, 1, None, (-1.0, [1, 2], [-1.0]))]), InvalidArgumentError, None),
        (lambda o, v: o.step([(7, 1, "eos", None)]), None, TypeError),
        (lambda o, v: o.add(7, spec()), None, ValueError),
        (lambda o, v: v.decode([lone_continuation_byte(v)], strict=True), None, ValueError),
    ],
)
def test_bad_input_raises_a_specific_error(
    vocab: Vocabulary,
    action: Any,
    error: type[Exception] | None,
    builtin: type[Exception] | None,
) -> None:
    out = OutputPath(vocab)
    out.add(7, spec())
    with pytest.raises(builtin or ValueError) as raised:
        action(out, vocab)
    if error is not None:
        assert isinstance(raised.value, error)
    assert str(raised.value)


def test_finished_and_duplicate_requests(vocab: Vocabulary) -> None:
    out = OutputPath(vocab)
    out.add(1, spec())
    with pytest.raises(DuplicateRequestError):
        out.add(1, spec())
    out.step([(1, 300, LENGTH, None)])
    with pytest.raises(RequestFinishedError, match="already finished"):
        out.step([(1, 300, None, None)])


def test_strict_mode_reports_invalid_utf8_and_the_process_lives(vocab: Vocabulary) -> None:
    out = OutputPath(vocab, strict_utf8=True)
    out.add(1, spec())
    with pytest.raises(InvalidUtf8Error, match="invalid UTF-8"):
        out.step([(1, lone_continuation_byte(vocab), None, None)])
    out.discard(1)
    lenient = OutputPath(vocab)
    lenient.add(1, spec(stream=False))
    assert lenient.step([(1, lone_continuation_byte(vocab), LENGTH, None)])[0].text == "\ufffd"


def test_tokenizer_files_that_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(TokenizerFileError) as missing:
        Vocabulary(str(tmp_path / "absent.json"))
    assert isinstance(missing.value, OSError)
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": 3}')
    with pytest.raises(TokenizerParseError, match="does not parse"):
        Vocabulary(str(broken))


def test_threads_share_one_output_path(vocab: Vocabulary) -> None:
    out = OutputPath(vocab)
    rng = random.Random(11)
    work = {h: [rng.randrange(vocab.size) for _ in range(300)] for h in range(8)}
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(handle: int) -> None:
        try:
            out.add(handle, spec(f"r{handle}"))
            results[handle] = "".join(r.text for r in run_tokens(out, handle, work[handle]))
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
    out = OutputPath(vocab)
    rng = random.Random(2)
    for handle in range(30):
        tokens = [rng.randrange(vocab.size) for _ in range(rng.randrange(1, 40))]
        out.add(handle, spec(), skip_special_tokens=handle % 2 == 0)
        streamed = "".join(r.text for r in run_tokens(out, handle, tokens))
        expected = reference.decode(tokens, skip_special_tokens=handle % 2 == 0)
        assert streamed == expected, tokens
