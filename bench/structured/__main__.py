"""`python -m bench.structured`: constrained decoding's cost per token and per schema.

For each model (builtin://tiny, plus any model directories given), compiles a few JSON schemas
(cold, on a fresh compiler), then walks a matcher through a valid document token by token and
times each step's mask in the native core, and the runtime's turning of it into an MLX mask.
Writes bench/results/structured.json.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from modelkube_native import GrammarCompiler
from tokenizers import Tokenizer

from modelkube_serving.engine.constrained import GrammarProcessor
from modelkube_serving.engine.loading import vocab_size
from modelkube_serving.models.builtin import ensure_builtin

CASES: dict[str, tuple[dict[str, Any] | None, Any]] = {
    "json_object": (None, {"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry"]}),
    "order": (
        {
            "$defs": {
                "item": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "maxLength": 40},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                        "kind": {"enum": ["tool", "food", "book"]},
                        "price": {"type": "number", "minimum": 0},
                    },
                    "required": ["name", "quantity", "kind"],
                    "additionalProperties": False,
                }
            },
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "maxItems": 8},
                "express": {"type": "boolean"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["items", "express"],
            "additionalProperties": False,
        },
        {
            "items": [
                {"name": "hammer", "quantity": 2, "kind": "tool", "price": 12.5},
                {"name": "bread", "quantity": 1, "kind": "food"},
            ],
            "express": True,
            "note": "leave it at the door, please",
        },
    ),
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_model(path: Path, rounds: int) -> dict[str, Any]:
    tokenizer_json = str(path / "tokenizer.json")
    width = vocab_size(path)
    config = json.loads((path / "config.json").read_text())
    eos_config = config.get("eos_token_id", 0)
    eos = sorted(eos_config if isinstance(eos_config, list) else [eos_config])
    tokenizer = Tokenizer.from_file(tokenizer_json)
    started = time.perf_counter()
    GrammarCompiler(tokenizer_json, eos, width)
    env_ms = (time.perf_counter() - started) * 1e3
    result: dict[str, Any] = {"model": str(path), "vocab": width, "token_env_ms": env_ms}
    for name, (schema, document) in CASES.items():
        text = json.dumps(document)  # the layout the grammar allows
        tokens = tokenizer.encode(text, add_special_tokens=False).ids
        compiler = GrammarCompiler(tokenizer_json, eos, width)
        grammar = (
            compiler.json_object() if schema is None else compiler.json_schema(json.dumps(schema))
        )
        mask_us: list[float] = []
        apply_us: list[float] = []
        logits = mx.zeros((1, width))
        for _ in range(rounds):
            matcher = grammar.matcher()
            for token in tokens:
                t0 = time.perf_counter()
                matcher.mask()
                mask_us.append((time.perf_counter() - t0) * 1e6)
                matcher.consume(token)
            assert matcher.is_accepting(), f"{name}: the document does not match"
            # The runtime's whole per-token cost: consume, mask, unpack, -inf where refused.
            processor = GrammarProcessor(grammar.matcher(), eos[0])
            history = mx.array([0])
            for token in [*tokens, eos[0]]:
                t0 = time.perf_counter()
                mx.eval(processor(history, logits))
                apply_us.append((time.perf_counter() - t0) * 1e6)
                history = mx.array([token])
        result[name] = {
            "tokens": len(tokens),
            "compile_ms": grammar.compile_us / 1e3,
            "mask_us_p50": statistics.median(mask_us),
            "mask_us_p99": _pct(mask_us, 0.99),
            "step_us_p50": statistics.median(apply_us),
            "step_us_p99": _pct(apply_us, 0.99),
        }
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = f"{'model':<40} {'vocab':>6} {'case':<12} {'compile ms':>10} "
    head += f"{'mask p50 us':>11} {'mask p99 us':>11} {'step p50 us':>11} {'step p99 us':>11}"
    lines = [head]
    lines += [
        f"token environment of {Path(r['model']).name}: {r['token_env_ms']:.0f} ms" for r in results
    ]
    for r in results:
        for name in CASES:
            c = r[name]
            lines.append(
                f"{Path(r['model']).name:<40} {r['vocab']:>6} {name:<12} {c['compile_ms']:>10.2f} "
                f"{c['mask_us_p50']:>11.1f} {c['mask_us_p99']:>11.1f} "
                f"{c['step_us_p50']:>11.1f} {c['step_us_p99']:>11.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__)
    parser.add_argument("models", nargs="*", type=Path, help="more model directories")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path("bench/results/structured.json"))
    args = parser.parse_args(argv)
    results = [run_model(p, args.rounds) for p in [ensure_builtin("tiny"), *args.models]]
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
