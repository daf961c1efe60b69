"""Plain-text tables of the results, and the ratios between systems."""

from typing import Any

HTTP_COLUMNS = (
    ("tok/s", "tok_per_s"), ("req/s", "req_per_s"),
    ("ttft50", "ttft_p50_ms"), ("ttft95", "ttft_p95_ms"),
    ("e2e50", "e2e_p50_ms"), ("e2e95", "e2e_p95_ms"), ("err", "errors"),
)  # fmt: skip
CEILING_COLUMNS = (("tok/s", "tok_per_s"), ("req/s", "req_per_s"))
SHORT_NAMES = {
    "ours": "ours", "ours-keep": "keep", "ours-llamacpp": "ours-llama", "mlx_lm.server": "mlx",
    "llama-server": "llama",
    "ceiling": "ceil",
}  # fmt: skip
# Each row's tok/s over these peers' at the same client count, where they were measured.
PEERS = ("mlx_lm.server", "llama-server", "ceiling")
WIDTH = 8
NAME_WIDTH = 14


def levels_by_concurrency(system: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(level["concurrency"]): level for level in system.get("levels", [])}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _row(cells: list[str]) -> str:
    return " ".join(cell.rjust(WIDTH) for cell in cells)


def model_table(result: dict[str, Any]) -> str:
    """One row per client count and system: its numbers, then its tok/s over each peer's."""
    systems = {name: levels_by_concurrency(system) for name, system in result["systems"].items()}
    peers = [p for p in PEERS if systems.get(p)]
    concurrencies = sorted({c for levels in systems.values() for c in levels})
    load = result.get("load_average") or {}
    lines = [
        f"== model {result['model']} ({result['path']}) ==",
        f"load average (1/5/15 min): before {load.get('before', '?')},"
        f" after {load.get('after', '?')}",
        "conc " + "system".ljust(NAME_WIDTH) + " "
        + _row([name for name, _ in HTTP_COLUMNS] + [f"/{SHORT_NAMES[p]}" for p in peers]),
    ]  # fmt: skip
    for c in concurrencies:
        for name, levels in systems.items():
            level = levels.get(c)
            if level is None:
                continue
            columns = CEILING_COLUMNS if name == "ceiling" else HTTP_COLUMNS
            cells = [fmt(level.get(key)) for _, key in columns]
            cells += ["" for _ in range(len(HTTP_COLUMNS) - len(columns))]
            mine = level.get("tok_per_s")
            cells += [
                "" if p == name else fmt(ratio(mine, systems[p].get(c, {}).get("tok_per_s")))
                for p in peers
            ]
            lines.append(f"{c:>4} {name.ljust(NAME_WIDTH)} {_row(cells)}")
    lines += [_per_round(result["model"], c, systems) for c in concurrencies]
    lines.append(_notes(result))
    return "\n".join(lines)


def _round_tok_per_s(level: dict[str, Any] | None) -> list[float]:
    return [float(r["tok_per_s"]) for r in (level or {}).get("rounds", [])]


def _per_round(model: str, c: int, systems: dict[str, dict[int, dict[str, Any]]]) -> str:
    """e.g. "tiny @16 tok/s per round: ours 934/902 mlx 738/701 ceil 1128/1090 | ours/mlx ..."."""
    values = {name: _round_tok_per_s(levels.get(c)) for name, levels in systems.items()}
    parts = [
        f"{SHORT_NAMES.get(name, name)} " + ("/".join(f"{v:.0f}" for v in tok) or "-")
        for name, tok in values.items()
    ]
    paired = zip(values.get("ours", []), values.get("mlx_lm.server", []), strict=False)
    ratios = "/".join(f"{a / b:.2f}" for a, b in paired if b) or "-"
    return f"{model} @{c} tok/s per round: {' '.join(parts)} | ours/mlx {ratios}"


def _round_orders(result: dict[str, Any]) -> str:
    orders = result.get("round_orders", [])
    return "; ".join(" > ".join(SHORT_NAMES.get(name, name) for name in order) for order in orders)


def _notes(result: dict[str, Any]) -> str:
    notes = [
        "(tok/s = generated tokens / wall time, median over rounds; ttft/e2e in ms, percentiles"
        " over all rounds' requests; err = all rounds; /peer = this row's median tok/s over"
        " the peer's at the same client count)",
        f"  round orders: {_round_orders(result)}",
    ]
    for name, system in result["systems"].items():
        if system.get("error"):
            notes.append(f"  {name}: ERROR {system['error']}")
        notes.append(f"  {name}: blas={system.get('blas', '?')}")
        if warm := _warm_up(system.get("warm_up") or {}):
            notes.append(f"  {name}: {warm}")
        for level in system.get("levels", []):
            for message, count in (level.get("error_samples") or {}).items():
                notes.append(f"  {name} @{level['concurrency']}: {count}x {message}")
            if level.get("rounds") and level["rounds"][0].get("per_request") is not None:
                notes.append(f"  {name} @{level['concurrency']}: slowest ttft {_slowest(level)}")
            if level.get("short_requests"):
                notes.append(f"  {name} @{level['concurrency']}: "
                             f"{level['short_requests']} requests under max_tokens")  # fmt: skip
    return "\n".join(notes)


def _warm_up(warm: dict[str, Any]) -> str:
    """e.g. "warm-up burst of 16 (not timed): ttft min 190 / median 420 / max 1420 ms"."""
    ttfts = warm.get("burst_ttft_ms") or []
    parts = []
    if ttfts:
        parts.append(
            f"warm-up burst of {len(ttfts)} (not timed): ttft min {ttfts[0]:.0f} / median "
            f"{ttfts[len(ttfts) // 2]:.0f} / max {ttfts[-1]:.0f} ms"
        )
    if warm.get("error"):
        parts.append(f"warm-up ERROR {warm['error']}")
    return "; ".join(parts)


def _slowest(level: dict[str, Any], count: int = 3) -> str:
    """e.g. "212 ms (round 2, sent at 1630 ms, cached 20/38), ..." over the level's rounds."""
    found = [
        (float(r["ttft_ms"]), number, r)
        for number, round_ in enumerate(level["rounds"], 1)
        for r in round_["per_request"]
        if r.get("ttft_ms") is not None
    ]
    found.sort(key=lambda item: -item[0])
    return (
        ", ".join(
            f"{ttft:.0f} ms (round {number}, sent at {r['sent_ms']:.0f} ms,"
            f" cached {r['cached_tokens']}/{r['prompt_tokens']})"
            for ttft, number, r in found[:count]
        )
        or "-"
    )


def two_turn_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "== two-turn chat: ttft1 = TTFT of a ~1,000-token prefill; turn 2 adds a short turn"
        " (prefix cache); max_tokens 16, median of the trials =="
    ]
    lines.append(
        f"{'model':<22} {'system':<14} {'ttft1 ms':>9} {'ttft2 ms':>9} {'ratio':>7} {'errors':>7}"
        f" {'prompt1':>8} {'prompt2':>8} {'cached2':>8}"
    )
    for result in results:
        for name, system in result["systems"].items():
            tt = system.get("two_turn")
            if not tt:
                continue
            lines.append(
                f"{result['model']:<22} {name:<14} {fmt(tt['ttft1_ms']):>9}"
                f" {fmt(tt['ttft2_ms']):>9} {fmt(tt['ratio']):>7} {tt['errors']:>7} {_usage(tt)}"
            )
    return "\n".join(lines)


def multi_turn_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "== multi-turn chat: staggered sessions, 4 turns each, one ~800-token system prompt;"
        " median TTFT of turn 1 (sessions after the first) and of turns 2-4; ratio: to"
        " llama-server's =="
    ]
    lines.append(
        f"{'model':<22} {'system':<14} {'sessions':>8} {'turn1 ms':>9} {'turn2-4 ms':>10}"
        f" {'p95 ms':>8} {'ratio':>7} {'cached':>7} {'prompt':>7} {'errors':>7}"
    )
    for result in results:
        peer = (result["systems"].get("llama-server") or {}).get("multi_turn") or {}
        for name, system in result["systems"].items():
            mt = system.get("multi_turn")
            if not mt:
                continue
            ratio = None
            if mt["ttft_later_ms"] is not None and peer.get("ttft_later_ms"):
                ratio = mt["ttft_later_ms"] / peer["ttft_later_ms"]
            lines.append(
                f"{result['model']:<22} {name:<14} {mt['sessions']:>8}"
                f" {fmt(mt['ttft_first_ms']):>9} {fmt(mt['ttft_later_ms']):>10}"
                f" {fmt(mt['ttft_later_p95_ms']):>8} {fmt(ratio):>7} {mt['cached_later']:>7}"
                f" {mt['prompt_later']:>7} {mt['errors']:>7}"
            )
    return "\n".join(lines)


def _usage(two_turn: dict[str, Any]) -> str:
    """Usage of the first trial: prompt tokens of both turns and the turn-2 cache hit."""
    trials = two_turn.get("trials") or [{}]
    turn1, turn2 = trials[0].get("turn1", {}), trials[0].get("turn2", {})
    values = (turn1.get("prompt_tokens"), turn2.get("prompt_tokens"), turn2.get("cached_tokens"))
    return " ".join(fmt(v).rjust(8) for v in values)
