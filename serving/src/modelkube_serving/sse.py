"""Server-sent events framing for the proxy's own frames (local completions are framed by
the native renderer)."""

import json
from typing import Any


def frame(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )
