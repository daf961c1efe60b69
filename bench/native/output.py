"""The output path at batch 1, 8 and 32: the native core vs its Python equivalent.

Both turn the same token streams (natural text from the built-in tokenizer, two stop strings
that never match, so every token is held-back-checked) into SSE frames, one engine step at a
time, and are timed per step over the same steps, interleaved.
"""

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlx_lm.tokenizer_utils import load as load_mlx_tokenizer
from modelkube_native import FinishReason, OutputPath, RenderSpec, Vocabulary
from tokenizers import Tokenizer

from bench.native.baselines import PythonOutputPath
from bench.native.timing import interleaved
from bench.serving.prompts import long_text
from modelkube_serving.models.builtin import ensure_builtin

STOPS = ("<|never|>", "\n\nUser:")
STEPS = 64  # tokens per request in one timed run


def token_streams(model_dir: Path, batch: int) -> list[list[int]]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text, _ = long_text(model_dir / "tokenizer.json", STEPS * batch + 64, seed=batch)
    ids = tokenizer.encode(text).ids
    return [ids[i * STEPS : (i + 1) * STEPS] for i in range(batch)]


Step = list[tuple[int, int | None, str | None]]
NativeStep = list[
    tuple[int, int | None, FinishReason | None, tuple[float, list[int], list[float]] | None]
]


def _steps(streams: list[list[int]]) -> list[Step]:
    steps: list[Step] = []
    for s in range(STEPS):
        finish = "length" if s == STEPS - 1 else None
        steps.append([(h, stream[s], finish) for h, stream in enumerate(streams)])
    return steps


def _native_steps(steps: list[Step]) -> list[NativeStep]:
    finish = {None: None, "length": FinishReason.LENGTH}
    return [[(h, token, finish[f], None) for h, token, f in step] for step in steps]


def native_path(vocab: Vocabulary, steps: list[NativeStep]) -> None:
    out = OutputPath(vocab)
    for h in range(len(steps[0])):
        render = RenderSpec(f"chatcmpl-{h}", "tiny", chat=True, stream=True, created=0)
        out.add(h, render, stops=list(STOPS))
    for step in steps:
        out.step(step)


def python_path(mlx_tokenizer: Any, steps: list[Step]) -> None:
    out = PythonOutputPath(mlx_tokenizer, "tiny")
    for h in range(len(steps[0])):
        out.add(h, f"chatcmpl-{h}", STOPS)
    for step in steps:
        out.step(step)


def run(batches: tuple[int, ...] = (1, 8, 32), rounds: int = 15) -> list[dict[str, Any]]:
    model_dir = ensure_builtin("tiny")
    vocab = Vocabulary(str(model_dir / "tokenizer.json"))
    mlx_tokenizer = load_mlx_tokenizer(model_dir)
    rows = []
    for batch in batches:
        steps = _steps(token_streams(model_dir, batch))
        contenders: dict[str, Callable[[], None]] = {
            "native": functools.partial(native_path, vocab, _native_steps(steps)),
            "python": functools.partial(python_path, mlx_tokenizer, steps),
        }
        times = interleaved(contenders, rounds)
        per_step = {name: t / STEPS * 1e6 for name, t in times.items()}
        rows.append(
            {
                "batch": batch,
                "native_us_per_step": per_step["native"],
                "python_us_per_step": per_step["python"],
                "native_us_per_token": per_step["native"] / batch,
                "python_us_per_token": per_step["python"] / batch,
                "speedup": per_step["python"] / per_step["native"],
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "batch | native us/step | python us/step | native us/token | python us/token | speedup",
        "------+----------------+----------------+-----------------+-----------------+--------",
    ]
    for r in rows:
        lines.append(
            f"{r['batch']:5d} | {r['native_us_per_step']:14.1f} | {r['python_us_per_step']:14.1f} "
            f"| {r['native_us_per_token']:15.2f} | {r['python_us_per_token']:15.2f} "
            f"| {r['speedup']:6.1f}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
