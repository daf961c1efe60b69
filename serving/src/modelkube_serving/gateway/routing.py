"""Which pod a request goes to: consistent hashing with bounded loads (CHWBL).

The one copy of the routing rule; the gateway and bench/gateway both call `choose`.

A request's key (the start of its conversation and its adapter, see `request_key`) lands on a
hash ring of the endpoints; the first endpoint on the ring from there is the key's home. The
home takes the request while its in-flight load stays within `bound_factor` times the mean
load (counting this request): the same conversation keeps reaching the pod that holds its
prompt cache until that pod is busier than its share (Mirrokni, Thorup, Zadimoghaddam,
"Consistent Hashing with Bounded Loads", 2018; KubeAI's load balancer uses the same bound).

A request its home cannot take goes to the least loaded endpoint, ties going to the first of
them on the ring from the key. Classic CHWBL walks on to the next endpoint under the bound,
which may be nearly as busy as the home; but a spilled request finds none of its own history
cached wherever it goes, so all that is left to choose by is the queue it joins. The
tie-break keeps a conversation that spills more than once on the same second pod when loads
allow, where its spilled turns are cached. With the bound rounded up, the least loaded
endpoint always fits under it. The bound is at least 2 (MIN_BOUND): a pod batches, so one
more sequence beside a running one costs less than the prefill its history would need
elsewhere.
"""

import bisect
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_BOUND_FACTOR = 1.25  # KubeAI's default: a pod may take 25% more than the mean
VIRTUAL_NODES = 64  # ring points per endpoint: keys spread evenly over a handful of pods
KEY_CHARS = 100  # characters of the first user message that identify a conversation
# At a light load the share alone is 1 (4 pods, up to 2 requests in flight: ceil(1.25 * 3 / 4)),
# so a conversation left its pod whenever that pod served anyone: it paid a prefill of its
# whole history (123-177 ms against 20-23 ms with it cached, on builtin://tiny) to avoid
# sharing a batch with one other sequence. Paced users (bench/gateway --think-ms) found their
# history on 71-77% of later turns through the gateway, against 92-94% at full load.
MIN_BOUND = 2


@dataclass(frozen=True)
class Choice:
    endpoint: str
    affinity: bool  # the key's own endpoint (the first on the ring), not a spill


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@lru_cache(maxsize=256)
def _ring(endpoints: frozenset[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The ring's points, sorted, and the endpoint at each; cached per endpoint set."""
    points = sorted(
        (_hash(f"{endpoint}#{i}".encode()), endpoint)
        for endpoint in endpoints
        for i in range(VIRTUAL_NODES)
    )
    return tuple(p for p, _ in points), tuple(e for _, e in points)


def load_bound(loads: Mapping[str, int], bound_factor: float) -> int:
    """The most in-flight requests an endpoint may hold after taking one more: its share of
    the load times `bound_factor`, and never under MIN_BOUND."""
    total = sum(loads.values()) + 1
    return max(MIN_BOUND, math.ceil(bound_factor * total / len(loads)))


def choose(key: bytes, loads: Mapping[str, int], bound_factor: float) -> Choice:
    """The endpoint for `key` among `loads` (endpoint -> in-flight requests); `loads` must
    not be empty and `bound_factor` must be at least 1."""
    if not loads:
        raise ValueError("no endpoints to choose from")
    if bound_factor < 1:
        raise ValueError("bound_factor must be at least 1")
    order = _ring_order(key, frozenset(loads))
    home = order[0]
    if loads[home] + 1 <= load_bound(loads, bound_factor):
        return Choice(home, affinity=True)
    return Choice(min(order, key=loads.__getitem__), affinity=False)  # the first of the least


def _ring_order(key: bytes, endpoints: frozenset[str]) -> list[str]:
    """Every endpoint once, in the order the ring meets them walking on from `key`."""
    points, owners = _ring(endpoints)
    start = bisect.bisect(points, _hash(key))
    order: list[str] = []
    for step in range(len(points)):
        endpoint = owners[(start + step) % len(points)]
        if endpoint not in order:
            order.append(endpoint)
            if len(order) == len(endpoints):
                break
    return order


def request_key(body: Mapping[str, object], adapter: str) -> bytes:
    """What identifies a conversation: the adapter and the start of the first user message
    (of a chat) or of the prompt. Not the system prompt: many conversations share it, and
    every pod caches it soon anyway."""
    return f"{adapter}\0{_opening(body)[:KEY_CHARS]}".encode(errors="replace")


def _opening(body: Mapping[str, object]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt else ""
    return prompt if isinstance(prompt, str) else str(prompt or "")


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones, in order
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
