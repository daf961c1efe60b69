"""Load from `wrk`: one POST body from a Lua script, results as JSON from its `done()` hook.

Latency is wrk's own histogram (microseconds, per whole response: for a stream, until its last
chunk); requests/s is completed responses over the run's duration. Non-2xx responses, read
errors and timeouts are counted as errors.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

MARKER = "WRK_JSON "
API_KEY = "sk-bench"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.body = [==[%(body)s]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"errors":%%d,"p50_us":%%d,"p95_us":%%d,'
    .. '"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean,
    latency.max))
end
"""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def write_script(directory: Path, name: str, body: dict[str, Any]) -> Path:
    path = directory / f"{name}.lua"
    text = json.dumps(body, separators=(",", ":"))
    path.write_text(LUA % {"key": API_KEY, "body": text, "marker": MARKER})
    return path


def run_wrk(
    url: str, script: Path, connections: int, seconds: float, cpus: str | None
) -> dict[str, Any]:
    """One wrk run with one thread; `cpus` pins it (taskset -c) when given."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["connections"] = connections
            return result
    raise RuntimeError(f"wrk gave no result (rc {done.returncode}): {done.stderr or done.stdout}")
