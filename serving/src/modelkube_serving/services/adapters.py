"""Which adapters the runtime serves: from `--adapter` flags and a watched adapters file.

The file is polled four times a second (a small read) and compared by content, so a ConfigMap
that Kubernetes updates by an atomic symlink swap is seen like any edit. Each poll reconciles:
adapters new to the file load, removed ones unload, one whose uri changed reloads. An adapter
whose directory is not complete yet (a fine-tune still writing it) stays pending and is tried
again on the next poll; one that failed to load is tried again once its files change.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from modelkube_serving.metrics import RuntimeMetrics
from modelkube_serving.models.adapters import (
    AdapterSpec,
    AdapterSpecError,
    Fingerprint,
    fingerprint,
    parse_adapters_file,
)
from modelkube_serving.models.uri import AdapterNotReady, ModelSourceError, resolve_adapter

log = logging.getLogger("modelkube.adapters")

State = Literal["pending", "loading", "ready", "failed"]
STATES: tuple[State, ...] = ("ready", "loading", "pending", "failed")


class AdapterEngine(Protocol):
    def load_adapter(self, name: str, path: Path, done: Callable[[str | None], None]) -> None: ...

    def unload_adapter(self, name: str) -> None: ...


@dataclass(frozen=True)
class AdapterStatus:
    name: str
    uri: str
    state: State
    error: str | None = None
    fingerprint: Fingerprint = ()

    def card(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "state": self.state, "error": self.error}


class AdapterManager:
    def __init__(
        self,
        engine: AdapterEngine,
        metrics: RuntimeMetrics,
        static: Sequence[tuple[AdapterSpec, Path]] = (),
        file: Path | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._static = {spec.name: (spec.uri, path) for spec, path in static}
        self._file = file
        self._poll_s = poll_s
        self._status: dict[str, AdapterStatus] = {}
        self._file_text: str | None = None
        self._file_specs: list[AdapterSpec] = []
        self._polled = False
        self._settled = False

    @property
    def settled(self) -> bool:
        """The adapters asked for at startup have loaded or failed (readiness waits)."""
        if not self._settled and self._polled:
            self._settled = all(s.state != "loading" for s in self._status.values())
        return self._settled

    def statuses(self) -> list[AdapterStatus]:
        return [self._status[name] for name in sorted(self._status)]

    async def run(self) -> None:
        """Reconcile now, then on every poll of the adapters file (if there is one)."""
        while True:
            try:
                await self.poll()
            except Exception:  # the next poll tries again; serving goes on meanwhile
                log.exception("adapters: reconciling failed")
            if self._file is None:
                return
            await asyncio.sleep(self._poll_s)

    async def poll(self) -> None:
        desired = {spec.name: spec.uri for spec in await self._read_file()}
        desired.update({name: uri for name, (uri, _) in self._static.items()})
        for name in [n for n in self._status if n not in desired]:
            self._remove(name)
        for name, uri in desired.items():
            await self._ensure(name, uri)
        self._polled = True
        self._report()

    async def _read_file(self) -> list[AdapterSpec]:
        if self._file is None:
            return []
        try:
            text: str | None = await asyncio.to_thread(self._file.read_text)
        except FileNotFoundError:
            text = None  # not there yet: no adapters from it
        except OSError as exc:
            log.error("adapters file %s: cannot read it: %s", self._file, exc)
            return self._file_specs
        if text != self._file_text:
            self._file_text = text
            self._file_specs = self._parse(text)
        return self._file_specs

    def _parse(self, text: str | None) -> list[AdapterSpec]:
        if text is None:
            return []
        try:
            specs, problems = parse_adapters_file(text)
        except AdapterSpecError as exc:
            log.error("adapters file %s: %s; keeping what it listed before", self._file, exc)
            return self._file_specs
        for problem in problems:
            log.error("adapters file %s: %s", self._file, problem)
        for spec in specs:
            if spec.name in self._static:
                log.warning("adapters file: %s is set by --adapter; ignoring it", spec.name)
        return [s for s in specs if s.name not in self._static]

    async def _ensure(self, name: str, uri: str) -> None:
        now = self._status.get(name)
        if now is not None and now.uri == uri:
            if now.state in ("loading", "ready"):
                return
            if now.state == "failed" and uri.startswith("hf://"):
                return  # a download that failed is not tried again every second
        try:
            path = await self._resolve(name, uri)
        except AdapterNotReady as exc:
            self._set(AdapterStatus(name, uri, "pending", str(exc)))
            return
        except ModelSourceError as exc:
            if now is None or (now.uri, now.error) != (uri, str(exc)):
                log.error("adapter %s: cannot load %s: %s", name, uri, exc)
            self._set(AdapterStatus(name, uri, "failed", str(exc)))
            return
        prints = fingerprint(path)
        if now is not None and now.uri == uri and now.fingerprint == prints:
            return  # failed on these very files
        self._set(AdapterStatus(name, uri, "loading", fingerprint=prints))
        self._engine.load_adapter(name, path, lambda error: self._loaded(name, uri, error))

    async def _resolve(self, name: str, uri: str) -> Path:
        static = self._static.get(name)
        if static is not None and static[0] == uri:
            return static[1]
        return await asyncio.to_thread(resolve_adapter, uri)

    def _loaded(self, name: str, uri: str, error: str | None) -> None:
        now = self._status.get(name)
        if now is None or now.uri != uri or now.state != "loading":
            return
        state: State = "ready" if error is None else "failed"  # the engine logged which
        self._set(AdapterStatus(name, uri, state, error, now.fingerprint))
        self._report()

    def _set(self, status: AdapterStatus) -> None:
        before = self._status.get(status.name)
        self._status[status.name] = status
        engine_has_it = before is not None and before.state in ("loading", "ready")
        if engine_has_it and status.state in ("pending", "failed"):
            self._engine.unload_adapter(status.name)  # serve what is asked for, or nothing
        changed = before is None or (before.uri, before.error) != (status.uri, status.error)
        if changed and status.state == "pending":
            log.info("adapter %s: waiting for %s: %s", status.name, status.uri, status.error)

    def _remove(self, name: str) -> None:
        status = self._status.pop(name)
        if status.state in ("loading", "ready"):
            self._engine.unload_adapter(name)
        log.info("adapter %s: removed (%s)", name, status.uri)

    def _report(self) -> None:
        for state in STATES:
            count = sum(s.state == state for s in self._status.values())
            self._metrics.adapters.labels(state=state).set(count)
