"""Watches of one namespaced resource list on the API server, in a thread.

Each event is stamped with time.monotonic() when its line arrives: millisecond resolution, at
the cost of one long-lived connection instead of a `kubectl get` every 100 ms.
"""

import json
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.controlplane.cluster import ControlPlane

OnEvent = Callable[[str, dict[str, Any], float], None]
_TIMEOUT = httpx.Timeout(10.0, read=1.0)  # a quiet second: reconnect and look at the stop flag


def admin_client(cp: ControlPlane) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    return httpx.Client(
        base_url=cp.server,
        verify=context,
        headers={"Authorization": f"Bearer {cp.admin_token}"},
        timeout=_TIMEOUT,
    )


class Watcher:
    """Calls `on_event(type, object, monotonic_time)` for each event from a list's watch."""

    def __init__(self, cp: ControlPlane, path: str, on_event: OnEvent) -> None:
        self._client = admin_client(cp)
        self._path = path
        self._on_event = on_event
        self._stop = threading.Event()
        self._rv = ""
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> "Watcher":
        listing = self._client.get(self._path, params={"limit": "1"})
        listing.raise_for_status()
        self._rv = listing.json()["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except (httpx.ReadTimeout, httpx.RemoteProtocolError):
                continue
            except Exception as exc:  # reported by the round, which then stops waiting
                self.error = exc
                return

    def _stream(self) -> None:
        params = {
            "watch": "1",
            "resourceVersion": self._rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "600",
        }
        with self._client.stream("GET", self._path, params=params) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    self._handle(line, time.monotonic())
                if self._stop.is_set():
                    return

    def _handle(self, line: str, now: float) -> None:
        event = json.loads(line)
        obj: dict[str, Any] = event["object"]
        if event["type"] == "ERROR":
            raise RuntimeError(f"watch {self._path}: {obj.get('message')}")
        self._rv = obj["metadata"]["resourceVersion"]
        if event["type"] != "BOOKMARK":
            self._on_event(event["type"], obj, now)
