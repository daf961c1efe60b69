"""OpenAI response bodies built as plain dicts (pure functions). Completions are not here:
the native renderer writes every byte of those."""

import time
from typing import Any


def model_card(model_id: str, parent: str | None = None) -> dict[str, Any]:
    """One `GET /v1/models` entry; an adapter names its base model as `parent`, as vLLM does."""
    card: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "modelkube",
    }
    if parent is not None:
        card["parent"] = parent
    return card
