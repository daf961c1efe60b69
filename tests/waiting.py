"""Waiting on a condition, the one way tests wait: never a fixed sleep."""

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """The predicate's first truthy value, polled every 50 ms; TimeoutError naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_http_ok(
    url: str, stopped: Callable[[], str | None], log: Callable[[], str], timeout: float
) -> None:
    """Until GET `url` answers 200: RuntimeError as soon as `stopped()` says why the server
    died, TimeoutError with its log after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        why = stopped()
        if why is not None:
            raise RuntimeError(f"{why}:\n{log()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{log()}")
