"""A task made for fine-tuning the real model: "Tag: <word>" is answered "[[<word>]]".

The answer is the prompt's own word in a fixed wrapper, so a small LoRA run can learn it, and
the base model, which has never seen the format, cannot guess it. The words are made-up
syllable strings, all distinct; the held-out prompts use words that no training row has.

The JSONL files under data/ are this module's output; regenerate them with
`python -m tests.finetune.tag_task`.
"""

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

DATA = Path(__file__).parent / "data"
TRAIN = DATA / "tag_train.jsonl"
HELD_OUT = DATA / "tag_heldout.jsonl"
TRAIN_ROWS, HELD_OUT_ROWS = 160, 20
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
SYSTEM = ""

# Measured on the real model (rank 8, batch 4; held-out exact match, from 0/20 for the base).
# With the template's default system prompt (rows padded to 65 tokens): 16 layers, 40 iterations
# at 2e-4: 19/20; 8 layers, 30 at 4e-4: 18/20, but 40 at 4e-4: 14/20; 4 layers, 30 at 5e-4:
# 13/20. With the empty one (rows padded to 33, a step ~2x cheaper), 16 layers: 40 at 2e-4, 40
# at 3e-4 and 30 at 3e-4: 18/20; 30 at 4e-4: 19/20 on MLX and 18/20 on llama.cpp, in about a
# third of the first recipe's training time. The rate is written out: PyYAML leaves 4e-4
# unquoted, and kubectl then reads a number where the CRD wants a string.
HYPERPARAMETERS = {"iterations": 30, "learningRate": "0.0004", "numLayers": 16, "rank": 8}


def words(count: int, seed: int = 14) -> list[str]:
    """Distinct made-up words of two or three consonant-vowel syllables."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < count:
        syllables = rng.choice((2, 3))
        seen.setdefault(
            "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        )
    return list(seen)


def prompt(user: str) -> list[ChatCompletionMessageParam]:
    """The messages a row and a request start with: an empty system message, because without
    one SmolLM2's chat template adds its own 19-token system prompt, and the rows' ~41 tokens
    then pad to 65 (mlx-lm pads a batch to one past a multiple of 32), not 33: each training
    step would cost about twice as much."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def row(word: str) -> dict[str, Any]:
    return {"messages": [*prompt(f"Tag: {word}"), {"role": "assistant", "content": f"[[{word}]]"}]}


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def generated() -> tuple[str, str]:
    """The training and held-out files' contents."""
    all_words = words(TRAIN_ROWS + HELD_OUT_ROWS)
    return (
        jsonl([row(w) for w in all_words[:TRAIN_ROWS]]),
        jsonl([row(w) for w in all_words[TRAIN_ROWS:]]),
    )


def held_out() -> list[tuple[str, str]]:
    """(prompt, expected answer) pairs."""
    pairs = []
    for line in HELD_OUT.read_text().splitlines():
        *_, user, answer = json.loads(line)["messages"]
        pairs.append((user["content"], answer["content"]))
    return pairs


def answers(client: openai.OpenAI, model: str, prompts: list[str]) -> list[str]:
    """Greedy answers, all prompts at once (the runtime batches them)."""

    def ask(user: str) -> str:
        reply = client.chat.completions.create(
            model=model,
            messages=prompt(user),
            max_tokens=12,
            temperature=0,
        )
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(ask, prompts))


def exact_match(replies: list[str], expected: list[str]) -> float:
    return sum(r.strip() == e for r, e in zip(replies, expected, strict=True)) / len(expected)


if __name__ == "__main__":
    train, held = generated()
    TRAIN.write_text(train)
    HELD_OUT.write_text(held)
