"""Plain-text tables of the results, and the ratios between systems."""

from typing import Any

HTTP_COLUMNS = (
    ("tok/s", "tok_per_s"), ("req/s", "req_per_s"),
    ("ttft50", "ttft_p50_ms"), ("ttft95", "ttft_p95_ms"),
    ("e2e50", "e2e_p50_ms"), ("e2e95", "e2e_p95_ms"), ("err", "errors"),
)  # fmt: skip
CEILING_COLUMNS = (("tok/s", "tok_per_s"), ("req/s", "req_per_s"))
GROUPS = (("ours", HTTP_COLUMNS), ("mlx_lm.server", HTTP_COLUMNS), ("ceiling", CEILING_COLUMNS))
SHORT_NAMES = {"ours": "ours", "mlx_lm.server": "mlx", "ceiling": "ceil"}
WIDTH = 8


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


def _cells(level: dict[str, Any] | None, columns: tuple[tuple[str, str], ...]) -> list[str]:
    return [fmt(level.get(key)) if level else "-" for _, key in columns]


def _row(cells: list[str]) -> str:
    return " ".join(cell.rjust(WIDTH) for cell in cells)


def _header() -> list[str]:
    groups = ["".ljust(5)]
    names = ["conc".rjust(5)]
    for title, columns in GROUPS:
        span = len(columns) * (WIDTH + 1) - 1
        groups.append(f"| {title} ".ljust(span, "-"))
        names.append(_row([name for name, _ in columns]))
    groups.append("| ratios ".ljust(2 * (WIDTH + 1) - 1, "-"))
    names.append(_row(["/mlx", "/ceil"]))
    return [" ".join(groups), " ".join(names)]


def model_table(result: dict[str, Any]) -> str:
    systems = {name: levels_by_concurrency(result["systems"][name]) for name, _ in GROUPS}
    concurrencies = sorted({c for levels in systems.values() for c in levels})
    lines = [f"== model {result['model']} ({result['path']}) ==", *_header()]
    for c in concurrencies:
        row = [str(c).rjust(5)]
        for name, columns in GROUPS:
            row.append(_row(_cells(systems[name].get(c), columns)))
        ours = systems["ours"].get(c, {}).get("tok_per_s")
        mlx = systems["mlx_lm.server"].get(c, {}).get("tok_per_s")
        ceil = systems["ceiling"].get(c, {}).get("tok_per_s")
        row.append(_row([fmt(ratio(ours, mlx)), fmt(ratio(ours, ceil))]))
        lines.append(" ".join(row))
    lines += [_per_round(result["model"], c, systems) for c in concurrencies]
    lines.append(_notes(result))
    return "\n".join(lines)


def _round_tok_per_s(level: dict[str, Any] | None) -> list[float]:
    return [float(r["tok_per_s"]) for r in (level or {}).get("rounds", [])]


def _per_round(model: str, c: int, systems: dict[str, dict[int, dict[str, Any]]]) -> str:
    """e.g. "tiny @16 tok/s per round: ours 934/902 mlx 738/701 ceil 1128/1090 | ours/mlx ..."."""
    values = {name: _round_tok_per_s(levels.get(c)) for name, levels in systems.items()}
    parts = [
        f"{SHORT_NAMES[name]} " + ("/".join(f"{v:.0f}" for v in tok) or "-")
        for name, tok in values.items()
    ]
    paired = zip(values["ours"], values["mlx_lm.server"], strict=False)
    ratios = "/".join(f"{a / b:.2f}" for a, b in paired if b) or "-"
    return f"{model} @{c} tok/s per round: {' '.join(parts)} | ours/mlx {ratios}"


def _round_orders(result: dict[str, Any]) -> str:
    orders = result.get("round_orders", [])
    return "; ".join(" > ".join(SHORT_NAMES[name] for name in order) for order in orders)


def _notes(result: dict[str, Any]) -> str:
    notes = [
        "(tok/s = generated tokens / wall time, median over rounds; ttft/e2e in ms, percentiles"
        " over all rounds' requests; err = all rounds; ratios are of the median tok/s)",
        f"  round orders: {_round_orders(result)}",
    ]
    for name, system in result["systems"].items():
        if system.get("error"):
            notes.append(f"  {name}: ERROR {system['error']}")
        notes.append(f"  {name}: blas={system.get('blas', '?')}")
        for level in system.get("levels", []):
            for message, count in (level.get("error_samples") or {}).items():
                notes.append(f"  {name} @{level['concurrency']}: {count}x {message}")
            if level.get("short_requests"):
                notes.append(f"  {name} @{level['concurrency']}: "
                             f"{level['short_requests']} requests under max_tokens")  # fmt: skip
    return "\n".join(notes)


def two_turn_table(results: list[dict[str, Any]]) -> str:
    lines = ["== two-turn chat (tiny, ~1000-token first turn, max_tokens 16, median of 3) =="]
    lines.append(
        f"{'system':<14} {'ttft1 ms':>9} {'ttft2 ms':>9} {'ratio':>7} {'errors':>7}"
        f" {'prompt1':>8} {'prompt2':>8} {'cached2':>8}"
    )
    for result in results:
        for name, system in result["systems"].items():
            tt = system.get("two_turn")
            if not tt:
                continue
            lines.append(
                f"{name:<14} {fmt(tt['ttft1_ms']):>9} {fmt(tt['ttft2_ms']):>9} "
                f"{fmt(tt['ratio']):>7} {tt['errors']:>7} {_usage(tt)}"
            )
    return "\n".join(lines)


def _usage(two_turn: dict[str, Any]) -> str:
    """Usage of the first trial: prompt tokens of both turns and the turn-2 cache hit."""
    trials = two_turn.get("trials") or [{}]
    turn1, turn2 = trials[0].get("turn1", {}), trials[0].get("turn2", {})
    values = (turn1.get("prompt_tokens"), turn2.get("prompt_tokens"), turn2.get("cached_tokens"))
    return " ".join(fmt(v).rjust(8) for v in values)
