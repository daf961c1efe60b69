"""The gateway's added latency, and the floor under it, from one interleaved run.

Five ways to the same pod, taken in turn (each round in a rotated order, so none always goes
first): straight to the pod, through the bare pass-through of `bench.gateway.floor` on the
native client and on a bare asyncio exchange, through the same pass-through served by the
Rust core's HttpFront instead of uvicorn, and through the gateway. Each request is a
1-token chat completion, not streamed. The client's own time is in all four, so the
differences of the p50s are what the proxies add; the floor's share is what any proxy on this
HTTP client over loopback costs here, the rest is the gateway's own code; the floor on asyncio
tells how much of the floor is the native client's crossing into the tokio runtime and back;
the front's floor is what the same relay adds with no event loop on its path.
"""

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelkube_serving.gateway.routing import DEFAULT_BOUND_FACTOR, choose, request_key
from tests.serving.runtime_process import free_port
from tests.waiting import wait_http_ok, wait_until

MESSAGES = [{"role": "user", "content": "ping"}]
BODY = {"model": "chat", "max_tokens": 1, "temperature": 0, "messages": MESSAGES}


@dataclass(frozen=True)
class AddedLatency:
    gateway_ms: float  # p50 through the gateway minus p50 straight to the pod
    floor_ms: float  # p50 through the bare pass-through minus p50 straight to the pod
    asyncio_floor_ms: float  # the same, the pass-through on the event loop's own socket
    front_floor_ms: float  # the same, the pass-through on the Rust core's HttpFront
    # p50 through `modelkube gateway --front native` minus p50 straight to the pod, when timed
    fronted_gateway_ms: float | None = None

    @classmethod
    def of(cls, results: dict[str, Any]) -> "AddedLatency":
        return cls(
            results["gateway_added_latency_p50_ms"],
            results["floor_added_latency_p50_ms"],
            results["asyncio_floor_added_latency_p50_ms"],
            results["front_floor_added_latency_p50_ms"],
            results.get("fronted_gateway_added_latency_p50_ms"),
        )

    def as_dict(self) -> dict[str, float | None]:
        return {
            "gateway_added_latency_p50_ms": self.gateway_ms,
            "floor_added_latency_p50_ms": self.floor_ms,
            "asyncio_floor_added_latency_p50_ms": self.asyncio_floor_ms,
            "front_floor_added_latency_p50_ms": self.front_floor_ms,
            "fronted_gateway_added_latency_p50_ms": self.fronted_gateway_ms,
        }


def home_pod(endpoints: list[str]) -> str:
    """The pod the gateway sends these requests to while nothing else is in flight."""
    return choose(
        request_key({"messages": MESSAGES}, ""), dict.fromkeys(endpoints, 0), DEFAULT_BOUND_FACTOR
    ).endpoint


FLOORS = {"floor": ("native", "uvicorn"), "asyncio floor": ("asyncio", "uvicorn"),
          "front floor": ("native", "front")}  # fmt: skip


def start_floor(
    upstream: str, logs: Path, client: str = "native", server: str = "uvicorn", relay: str = "whole"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.gateway.floor", "--upstream", upstream,
               "--port", str(port), "--client", client, "--server", server,
               "--relay", relay]  # fmt: skip
    log_file = logs / f"floor-{client}-{server}-{relay}.log"
    with log_file.open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def exited() -> str | None:
        return None if proc.poll() is None else "exited"

    if server == "front":  # it serves POSTs only
        wait_until(lambda: _posts_ok(f"{url}/healthz") or exited(), 60, f"{url} up")
        if exited():
            raise RuntimeError(f"the front's floor exited:\n{log_file.read_text()}")
    else:
        wait_http_ok(f"{url}/healthz", exited, log_file.read_text, 60)
    return proc, url


def _posts_ok(url: str) -> bool:
    try:
        return httpx.post(url, content=b"{}", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def added_latency(
    gateway: str,
    endpoints: list[str],
    logs: Path,
    rounds: int,
    fronted: str | None = None,
    pause_s: float = 0.0,
) -> AddedLatency:
    """`fronted`: a `modelkube gateway --front native` on the same pods, timed beside;
    `pause_s`: the idle time after each request, so that work one target leaves after its
    answer (a gateway's bookkeeping, its event loop's next turn) is over before the next
    target's request is timed, and is not counted in that one's time."""
    home = home_pod(endpoints)
    floors = {name: start_floor(home, logs, *how) for name, how in FLOORS.items()}
    try:
        urls = {"direct": f"http://{home}", **{k: url for k, (_, url) in floors.items()}}
        urls["gateway"] = gateway
        if fronted is not None:
            urls["gateway on the front"] = fronted
        times = _interleaved(urls, rounds, pause_s)
    finally:
        for proc, _ in floors.values():
            proc.terminate()
            proc.wait(30)
    direct = statistics.median(times["direct"])

    def added(name: str) -> float:
        return (statistics.median(times[name]) - direct) * 1000

    return AddedLatency(
        added("gateway"),
        added("floor"),
        added("asyncio floor"),
        added("front floor"),
        added("gateway on the front") if fronted is not None else None,
    )


def _interleaved(urls: dict[str, str], rounds: int, pause_s: float) -> dict[str, list[float]]:
    names = list(urls)
    times: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(timeout=30) as http:
        for name in names:  # a connection to each, warmed
            http.post(f"{urls[name]}/v1/chat/completions", json=BODY).raise_for_status()
        for i in range(rounds):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                http.post(f"{urls[name]}/v1/chat/completions", json=BODY).raise_for_status()
                times[name].append(time.perf_counter() - started)
                if pause_s:
                    time.sleep(pause_s)
    return times
