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

DATA = Path(__file__).parent / "data"
TRAIN = DATA / "tag_train.jsonl"
HELD_OUT = DATA / "tag_heldout.jsonl"
TRAIN_ROWS, HELD_OUT_ROWS = 160, 20
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"

# Measured on the real model (rank 8, batch 4; held-out exact match, from 0/20 for the base):
# 16 layers, 40 iterations at 2e-4: 19/20 (in-process and through the runtime alike); 8 layers,
# 30 at 4e-4: 18/20, but 40 at 4e-4: 14/20; 4 layers, 30 at 5e-4: 13/20. The rate is written
# out: PyYAML leaves 2e-4 unquoted, and kubectl then reads a number where the CRD wants a string.
HYPERPARAMETERS = {"iterations": 40, "learningRate": "0.0002", "numLayers": 16, "rank": 8}


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


def row(word: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"Tag: {word}"},
            {"role": "assistant", "content": f"[[{word}]]"},
        ]
    }


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
        messages = json.loads(line)["messages"]
        pairs.append((messages[0]["content"], messages[1]["content"]))
    return pairs


def answers(client: openai.OpenAI, model: str, prompts: list[str]) -> list[str]:
    """Greedy answers, all prompts at once (the runtime batches them)."""

    def ask(prompt: str) -> str:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
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
