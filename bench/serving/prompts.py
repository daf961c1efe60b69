"""Request bodies and prompts shared by every system, so they all see the same tokens."""

import random
from pathlib import Path
from typing import Any

_WORDS = (
    "river", "mountain", "engine", "lantern", "orchard", "quantum", "harbor", "velvet",
    "signal", "meadow", "copper", "falcon", "glacier", "harvest", "canyon", "ember", "prism",
    "thunder", "willow", "beacon", "marble", "compass", "saffron", "tundra", "voyage",
    "cobalt", "nectar", "summit", "orbit", "fable", "granite", "horizon", "kernel", "lattice",
    "mosaic", "nimbus", "oasis", "pepper", "quartz", "ripple", "spiral", "timber", "umbra",
    "vertex",
)  # fmt: skip


def user_prompt(index: int) -> str:
    return f"Tell me about request {index}"


def messages_for(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": user_prompt(index)}]


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stop": None,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def long_text(tokenizer_json: Path, target_tokens: int, seed: int) -> tuple[str, int]:
    """A text of about `target_tokens` tokens (checked with the model's tokenizer)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    rng = random.Random(seed)
    sentences: list[str] = []
    count = 0
    for _ in range(10_000):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
        sentences.append(" ".join(words).capitalize() + ".")
        count = len(tokenizer.encode(" ".join(sentences)).ids)
        if count >= target_tokens:
            break
    return " ".join(sentences), count
