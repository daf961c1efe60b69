"""Summaries of one load level: throughput, latency percentiles, error counts."""

from collections import Counter
from dataclasses import dataclass, field

from bench.serving.client import LoadRun


@dataclass
class LevelSummary:
    concurrency: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    generated_tokens: int
    tok_per_s: float
    req_per_s: float
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    short_requests: int = 0
    error_samples: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


def _error_kind(message: str) -> str:
    return message[:80]


def summarise(run: LoadRun, max_tokens: int) -> LevelSummary:
    good = [r for r in run.results if r.ok]
    ttfts = [r.ttft_s for r in good if r.ttft_s is not None]
    e2es = [r.e2e_s for r in good if r.e2e_s is not None]
    tokens = sum(r.completion_tokens for r in good)
    wall = max(run.wall_s, 1e-9)
    kinds = Counter(_error_kind(r.error) for r in run.results if r.error)
    return LevelSummary(
        concurrency=run.concurrency,
        requests=len(run.results),
        ok=len(good),
        errors=len(run.results) - len(good),
        wall_s=run.wall_s,
        generated_tokens=tokens,
        tok_per_s=tokens / wall,
        req_per_s=len(good) / wall,
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p95_ms=_ms(percentile(ttfts, 95)),
        e2e_p50_ms=_ms(percentile(e2es, 50)),
        e2e_p95_ms=_ms(percentile(e2es, 95)),
        short_requests=sum(1 for r in good if r.completion_tokens < max_tokens),
        error_samples=dict(kinds),
    )
