"""A process's memory and CPU from /proc, and a thread that samples peak RSS."""

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status, e.g. VmRSS or VmHWM; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024.0


def hwm_mb(pid: int) -> float | None:
    """The kernel's own peak RSS since the process started."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024.0


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (its threads included)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


@dataclass
class PeakSampler:
    """Samples VmRSS of some processes every `interval_s` and keeps each one's peak."""

    pids: dict[str, int]
    interval_s: float = 0.1
    peaks_mb: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "PeakSampler":
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        self.samples += 1
        for name, pid in self.pids.items():
            value = rss_mb(pid)
            if value is not None:
                self.peaks_mb[name] = max(value, self.peaks_mb.get(name, 0.0))
