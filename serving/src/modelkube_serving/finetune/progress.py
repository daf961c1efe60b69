"""Training progress: one tracker, and the places it is shown (a bar, log lines, the status).

The training loop calls `Tracker` once per iteration with numbers it already has (no extra
device sync); sinks that do I/O beyond a terminal do it on their own thread.
"""

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TextIO

from tqdm import tqdm

_SPEED_SMOOTHING = 0.2


@dataclass(frozen=True)
class Snapshot:
    iteration: int
    total: int
    train_loss: float | None = None
    validation_loss: float | None = None
    iterations_per_second: float | None = None
    eta_seconds: int | None = None
    phase: str = "training"  # training, validating, saving, done, interrupted

    @property
    def percent(self) -> int:
        return 100 * self.iteration // self.total if self.total else 0


class ProgressSink(Protocol):
    def update(self, snapshot: Snapshot, milestone: bool) -> None:
        """`milestone`: a loss was reported or the run changed phase (worth sending at once)."""

    def close(self) -> None: ...


class Tracker:
    def __init__(self, total: int, start: int, sinks: Sequence[ProgressSink]) -> None:
        self.sinks = list(sinks)
        self.snapshot = Snapshot(iteration=start, total=total)
        self._last = time.perf_counter()
        self._speed: float | None = None

    def iteration(self, iteration: int) -> None:
        now = time.perf_counter()
        elapsed, self._last = now - self._last, now
        if elapsed > 0:
            rate = 1.0 / elapsed
            s = self._speed
            self._speed = rate if s is None else s + _SPEED_SMOOTHING * (rate - s)
        left = self.snapshot.total - iteration
        eta = round(left / self._speed) if self._speed else None
        self._emit(
            replace(
                self.snapshot,
                iteration=iteration,
                iterations_per_second=self._speed,
                eta_seconds=eta,
                phase="training",
            ),
            milestone=False,
        )

    def train_loss(self, loss: float) -> None:
        self._emit(replace(self.snapshot, train_loss=loss), milestone=True)

    def validation_loss(self, loss: float) -> None:
        self._emit(replace(self.snapshot, validation_loss=loss), milestone=True)
        self._last = time.perf_counter()  # validation time is not training speed

    def phase(self, phase: str) -> None:
        self._emit(replace(self.snapshot, phase=phase), milestone=True)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def _emit(self, snapshot: Snapshot, milestone: bool) -> None:
        self.snapshot = snapshot
        for sink in self.sinks:
            sink.update(snapshot, milestone)


def describe(s: Snapshot) -> str:
    parts = [f"iteration {s.iteration}/{s.total}"]
    if s.train_loss is not None:
        parts.append(f"train loss {s.train_loss:.3f}")
    if s.validation_loss is not None:
        parts.append(f"validation loss {s.validation_loss:.3f}")
    if s.iterations_per_second:
        parts.append(f"{s.iterations_per_second:.2f} it/s")
    if s.eta_seconds is not None and s.phase == "training":
        parts.append(f"ETA {s.eta_seconds}s")
    return ", ".join(parts)


class Bar:
    """A progress bar, for a person at a terminal."""

    def __init__(self, total: int, start: int, stream: TextIO = sys.stderr) -> None:
        self._bar = tqdm(total=total, initial=start, unit="it", file=stream, dynamic_ncols=True)

    def update(self, snapshot: Snapshot, milestone: bool) -> None:
        if snapshot.iteration > self._bar.n:
            self._bar.update(snapshot.iteration - self._bar.n)
        if milestone:
            losses = {}
            if snapshot.train_loss is not None:
                losses["loss"] = f"{snapshot.train_loss:.3f}"
            if snapshot.validation_loss is not None:
                losses["val"] = f"{snapshot.validation_loss:.3f}"
            self._bar.set_postfix(losses, refresh=True)

    def close(self) -> None:
        self._bar.close()


class LogLines:
    """One line per reported loss, for logs (`kubectl logs` of the training pod)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._shown: tuple[float | None, float | None] = (None, None)

    def update(self, snapshot: Snapshot, milestone: bool) -> None:
        losses = (snapshot.train_loss, snapshot.validation_loss)
        if milestone and losses != self._shown:
            self._shown = losses
            print(f"modelkube finetune: {describe(snapshot)}", file=self._stream, flush=True)

    def close(self) -> None:
        pass
