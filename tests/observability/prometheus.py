"""A real Prometheus (Debian's `prometheus` package) for tests: started, queried, stopped."""

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.processes import stop_process
from tests.serving.runtime_process import free_port
from tests.waiting import wait_http_ok

SCRAPE_INTERVAL = "1s"
INSTALL = "install Prometheus and promtool with `make system-deps` (Debian package prometheus)"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: {INSTALL}")
    return path


class QueryError(AssertionError):
    """Prometheus refused or failed to evaluate an expression."""


@dataclass
class Target:
    """A static scrape target, with the labels Kubernetes service discovery would have added."""

    job: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    honor_labels: bool = False


@dataclass
class Prometheus:
    workdir: Path
    targets: list[Target]
    rule_files: list[Path] = field(default_factory=list)
    # Whole scrape configurations after the static targets: Kubernetes service discovery, say.
    scrape_configs: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(30)
        return self

    def _config(self) -> dict[str, Any]:
        interval = {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL}
        return {
            "global": interval,
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": t.job,
                    "honor_labels": t.honor_labels,
                    "static_configs": [{"targets": [t.address], "labels": t.labels}],
                }
                for t in self.targets
            ]
            + self.scrape_configs,
        }

    def _wait_ready(self, timeout: float) -> None:
        wait_http_ok(f"{self.url}/-/ready", self._stopped, self.log, timeout)

    def _stopped(self) -> str | None:
        assert self.proc is not None
        code = self.proc.poll()
        return None if code is None else f"prometheus exited with {code}"

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the `data` of a success, QueryError with Prometheus' own message
        otherwise."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise QueryError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (a scalar comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[float]:
        """Every value of every series a range query returns, as Grafana would draw them."""
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return [float(v) for series in data["result"] for _, v in series["values"]]

    def series(self, match: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = self.api("series", **{"match[]": match})
        return found

    def wait_for(self, expr: str, timeout: float = 15) -> list[dict[str, Any]]:
        """Poll an instant query until it returns something (a scrape or two after a change)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise TimeoutError(f"no data for {expr} after {timeout}s:\n{self.log()}")
