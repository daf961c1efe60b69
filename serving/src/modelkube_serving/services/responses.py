"""OpenAI response bodies built as plain dicts (pure functions). Completions are not here:
the native renderer writes every byte of those."""

from typing import Any


def model_card(model_id: str, created: int, parent: str | None = None) -> dict[str, Any]:
    """One `GET /v1/models` entry; an adapter names its base model as `parent`, as vLLM does.
    `created` is when the runtime started serving it, the same on every call."""
    card: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "modelkube",
    }
    if parent is not None:
        card["parent"] = parent
    return card
