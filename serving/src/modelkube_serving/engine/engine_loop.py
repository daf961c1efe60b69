"""The engine thread's outer loop: commands, then one decode step of every busy variant.

Each model variant (the base, and each adapter on it) has a loop of its own. The loop
applies every queued command (submit, cancel, load or unload an adapter, stop), then decodes
one step of each variant with running requests in turn, so an adapter loading between steps
delays the others by its load time alone. An unloaded adapter takes no new requests; those
it runs finish, and then its generator is released.
"""

import logging
import queue
import time
from collections.abc import Callable, Iterator, Sized
from pathlib import Path
from typing import Any, Protocol

from modelkube_native import RenderSpec

from modelkube_serving.engine.batch_loop import Deliver, Outbox
from modelkube_serving.engine.types import EventSink, Finished, GenerationRequest

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.25
# How long an idle engine's first step may wait for requests still on their way (see intake.py):
# a burst of 16 reaches the engine over ~10-40 ms on a busy event loop; one step is ~100-400 ms.
GATHER_S = 0.05
_GATHER_POLL_S = 0.002

Commands = queue.SimpleQueue[tuple[Any, ...]]
LoadDone = Callable[[str | None], None]


class VariantLoop(Protocol):
    """One variant's batch on the engine thread (MLX's BatchLoop, llama.cpp's LlamaLoop)."""

    @property
    def running(self) -> Sized: ...

    def step(self) -> None: ...

    def admit(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None: ...

    def cancel(self, request_id: str, outbox: Outbox) -> bool: ...

    def close(self) -> None: ...


# Builds an adapter's loop on the engine thread; raises when the adapter cannot load.
MakeVariant = Callable[[str, Path], VariantLoop]


class EngineLoop:
    def __init__(
        self,
        base: VariantLoop,
        make_variant: MakeVariant,
        deliver: Deliver,
        on_the_way: Callable[[], int] = lambda: 0,
    ) -> None:
        self.live: dict[str, VariantLoop] = {"": base}  # by adapter name; "" is the base
        self.draining: list[tuple[str, VariantLoop]] = []
        self._make_variant = make_variant
        self._deliver = deliver
        self._on_the_way = on_the_way  # requests the HTTP layer has not handed over yet

    def run(self, commands: Commands) -> None:
        """Until a stop command: apply commands, then decode one step of each busy variant."""
        try:
            while True:
                idle = not self._busy()
                if not self.apply(commands, _IDLE_POLL_S if idle else None):
                    break
                if idle and self._busy() and not self._gather(commands):
                    break
                for loop in self._loops():
                    if loop.running:
                        loop.step()
                self._release_drained()
        finally:
            for loop in self._loops():
                loop.close()

    def _gather(self, commands: Commands) -> bool:
        """The first step after idle waits, up to GATHER_S, for the requests still on their
        way, so a burst prefills in one step (intake.py); False once asked to stop."""
        deadline = time.monotonic() + GATHER_S
        while self._on_the_way() > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self.apply(commands, min(left, _GATHER_POLL_S)):
                return False
        # A request is handed over after its submit is queued: those handed over since the
        # last poll are in the queue now, not yet applied.
        return self.apply(commands, None)

    def apply(self, commands: Commands, wait_s: float | None) -> bool:
        """Apply every queued command, waiting up to `wait_s` for the first (None: not at all);
        False once asked to stop."""
        outbox = Outbox()
        try:
            command = commands.get(timeout=wait_s) if wait_s is not None else commands.get_nowait()
            while command[0] != "stop":
                self._apply_safely(command, outbox)
                command = commands.get_nowait()
            self._flush(outbox)
            return False
        except queue.Empty:
            pass
        self._flush(outbox)
        return True

    def _apply_safely(self, command: tuple[Any, ...], outbox: Outbox) -> None:
        """A command that fails unexpectedly fails its own request, never the thread."""
        try:
            self._apply_one(command, outbox)
        except Exception as exc:
            log.exception("engine command %s failed", command[0])
            if command[0] == "submit":  # ("submit", request, render, sink)
                request, sink = command[1], command[3]
                error = f"generation failed: {exc}"
                outbox.add(sink, Finished("error", len(request.prompt_tokens), 0, 0, error=error))

    def _apply_one(self, command: tuple[Any, ...], outbox: Outbox) -> None:
        kind = command[0]
        if kind == "submit":
            self._submit(command[1], command[2], command[3], outbox)
        elif kind == "cancel":
            for loop in self._loops():
                if loop.cancel(command[1], outbox):
                    break
        elif kind == "load":
            self._flush(outbox)  # what is ready goes out before a load holds the thread
            self._load(command[1], command[2], command[3])
        elif kind == "unload":
            self._retire(command[1])

    def _submit(
        self, request: GenerationRequest, render: RenderSpec, sink: EventSink, outbox: Outbox
    ) -> None:
        loop = self.live.get(request.adapter)
        if loop is None:  # unloaded since the service checked: a draining one still serves
            loop = next((lp for name, lp in self.draining if name == request.adapter), None)
        if loop is None:
            error = f"adapter {request.adapter!r} is not loaded"
            outbox.add(sink, Finished("error", len(request.prompt_tokens), 0, 0, error=error))
            return
        loop.admit(request, render, sink, outbox)

    def _load(self, name: str, path: Path, done: LoadDone) -> None:
        started = time.perf_counter()
        try:
            loop = self._make_variant(name, path)
        except Exception as exc:  # never the thread's end: the other variants keep serving
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.error("adapter %s: cannot load %s: %s", name, path, reason)
            self._retire(name)  # what is served is what was asked for, or nothing
            done(reason)
            return
        self._retire(name)
        self.live[name] = loop
        log.info("adapter %s: loaded %s in %.2fs", name, path, time.perf_counter() - started)
        done(None)

    def _retire(self, name: str) -> None:
        loop = self.live.pop(name, None) if name else None
        if loop is not None:
            self.draining.insert(0, (name, loop))  # the newest first, for late submits

    def _release_drained(self) -> None:
        for entry in [e for e in self.draining if not e[1].running]:
            self.draining.remove(entry)
            name, loop = entry
            loop.close()
            replaced = name in self.live
            log.info("adapter %s: %s", name, "old version released" if replaced else "unloaded")

    def _busy(self) -> bool:
        return any(loop.running for loop in self._loops())

    def _loops(self) -> Iterator[VariantLoop]:
        yield from list(self.live.values())
        yield from [loop for _, loop in self.draining]

    def _flush(self, outbox: Outbox) -> None:
        if outbox.items:
            self._deliver(list(outbox.items))
            outbox.items.clear()
