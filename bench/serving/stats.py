"""Summaries of one load level over its rounds: median throughput, pooled latency and errors."""

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.serving.client import LoadRun, RequestResult

MEDIAN_KEYS = ("tok_per_s", "req_per_s", "decode_only_tok_per_s")


@dataclass
class RequestRecord:
    """One request as it went, so the slow ones can be found: times in ms from the start of
    its round; `cached_tokens` > 0 when the server reused KV cells of the prompt."""

    index: int
    sent_ms: float
    ttft_ms: float | None
    first_token_ms: float | None
    e2e_ms: float | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    error: str | None


@dataclass
class RoundSummary:
    """One round's raw numbers."""

    first_request: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    generated_tokens: int
    tok_per_s: float
    req_per_s: float
    ttft_p50_ms: float | None
    e2e_p50_ms: float | None
    per_request: list[RequestRecord]


@dataclass
class LevelSummary:
    """tok/s and req/s: median over rounds; requests, errors, percentiles: all rounds pooled."""

    concurrency: int
    requests: int
    ok: int
    errors: int
    tok_per_s: float
    req_per_s: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    short_requests: int
    error_samples: dict[str, int]
    rounds: list[RoundSummary]


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


def _ttfts(results: list[RequestResult]) -> list[float]:
    return [r.ttft_s for r in results if r.ok and r.ttft_s is not None]


def _e2es(results: list[RequestResult]) -> list[float]:
    return [r.e2e_s for r in results if r.ok and r.e2e_s is not None]


def request_record(result: RequestResult) -> RequestRecord:
    ttft = _ms(result.ttft_s)
    return RequestRecord(
        index=result.index,
        sent_ms=result.sent_s * 1000.0,
        ttft_ms=ttft,
        first_token_ms=None if ttft is None else result.sent_s * 1000.0 + ttft,
        e2e_ms=_ms(result.e2e_s),
        prompt_tokens=result.prompt_tokens,
        cached_tokens=result.cached_tokens,
        completion_tokens=result.completion_tokens,
        error=result.error,
    )


def summarise_round(run: LoadRun) -> RoundSummary:
    good = [r for r in run.results if r.ok]
    tokens = sum(r.completion_tokens for r in good)
    wall = max(run.wall_s, 1e-9)
    return RoundSummary(
        first_request=run.first,
        requests=len(run.results),
        ok=len(good),
        errors=len(run.results) - len(good),
        wall_s=run.wall_s,
        generated_tokens=tokens,
        tok_per_s=tokens / wall,
        req_per_s=len(good) / wall,
        ttft_p50_ms=_ms(percentile(_ttfts(run.results), 50)),
        e2e_p50_ms=_ms(percentile(_e2es(run.results), 50)),
        per_request=[request_record(r) for r in sorted(run.results, key=lambda r: r.sent_s)],
    )


def summarise_level(runs: list[LoadRun], max_tokens: int) -> LevelSummary:
    """`runs`: the rounds of one level for one system, at least one."""
    rounds = [summarise_round(run) for run in runs]
    pooled = [r for run in runs for r in run.results]
    good = [r for r in pooled if r.ok]
    ttfts, e2es = _ttfts(pooled), _e2es(pooled)
    return LevelSummary(
        concurrency=runs[0].concurrency,
        requests=len(pooled),
        ok=len(good),
        errors=len(pooled) - len(good),
        tok_per_s=statistics.median(r.tok_per_s for r in rounds),
        req_per_s=statistics.median(r.req_per_s for r in rounds),
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p95_ms=_ms(percentile(ttfts, 95)),
        e2e_p50_ms=_ms(percentile(e2es, 50)),
        e2e_p95_ms=_ms(percentile(e2es, 95)),
        short_requests=sum(1 for r in good if r.completion_tokens < max_tokens),
        error_samples=dict(Counter(r.error[:80] for r in pooled if r.error)),
        rounds=rounds,
    )


def summarise_ceiling(concurrency: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The ceiling's rounds of one level: medians of MEDIAN_KEYS, plus every round as run."""
    medians = {key: statistics.median(float(r[key]) for r in rounds) for key in MEDIAN_KEYS}
    total = sum(int(r["requests"]) for r in rounds)
    return {"concurrency": concurrency, "requests": total, **medians, "rounds": rounds}
