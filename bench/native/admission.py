"""Admission with 1,000 queued requests over 10 keys: the native scheduler vs the same in Python.

Both run behind the runtime's own asyncio `Admission` (futures, deadlines, wake-ups), so the
difference is the scheduler alone: 1,000 requests queue at once behind 8 running, and each
releases its slot as soon as it is admitted, so the queue drains one hand-over at a time.
"""

import asyncio
import random
import statistics
import time
from typing import Any

from modelkube_native import Admission as NativeAdmission

from bench.native.baselines import PythonScheduler
from bench.native.timing import interleaved
from modelkube_serving.services.admission import Admission, AdmissionLimits, Ticket

KEYS = 10
RUNNING = 8


def _tickets(n: int) -> list[Ticket]:
    rng = random.Random(n)
    return [
        Ticket(f"key-{rng.randrange(KEYS)}", rng.choice((0, 0, 0, 1)), rng.randint(50, 4000))
        for _ in range(n)
    ]


async def _drain(admission: Admission, tickets: list[Ticket]) -> float:
    async def one(ticket: Ticket) -> None:
        slot = await admission.acquire(ticket)
        await asyncio.sleep(0)
        slot.release()

    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tickets))
    assert admission.idle
    return time.perf_counter() - start


def _admission(core: str, queued: int) -> Admission:
    adm = Admission(AdmissionLimits(RUNNING, queued), lambda running, queued: None)
    if core == "python":
        # The benchmark swaps the scheduler under the same asyncio wrapper.
        adm._core = PythonScheduler(RUNNING, queued)  # type: ignore[assignment]
    return adm


def _scheduler_only(core: Any, tickets: list[Ticket]) -> None:
    """Fill the queue behind the running slots, then hand every slot over until empty."""
    for i in range(RUNNING):
        core.submit(i, "warm", 0, 1, 1e9, 0.0)
    for i, t in enumerate(tickets, start=RUNNING):
        core.submit(i, t.key, t.priority, t.cost, 1e9, 0.0)
    while core.running:
        core.release(1.0)


def run_scheduler_only(queued: int = 1000, rounds: int = 15) -> dict[str, float]:
    """The scheduler alone, without asyncio: what the native core itself changes."""
    tickets = _tickets(queued)
    size = queued + RUNNING
    times = interleaved(
        {
            "native": lambda: _scheduler_only(NativeAdmission(RUNNING, size), tickets),
            "python": lambda: _scheduler_only(PythonScheduler(RUNNING, size), tickets),
        },
        rounds,
    )
    return {
        "native_ms": times["native"] * 1e3,
        "python_ms": times["python"] * 1e3,
        "speedup": times["python"] / times["native"],
    }


def run(queued: int = 1000, rounds: int = 9) -> dict[str, Any]:
    tickets = _tickets(queued)
    samples: dict[str, list[float]] = {"native": [], "python": []}
    for r in range(rounds):
        order = ["native", "python"] if r % 2 == 0 else ["python", "native"]
        for core in order:
            samples[core].append(asyncio.run(_drain(_admission(core, queued + RUNNING), tickets)))
    native, python = (statistics.median(samples[k]) for k in ("native", "python"))
    return {
        "scheduler_only": run_scheduler_only(queued),
        "queued": queued,
        "keys": KEYS,
        "native_ms": native * 1e3,
        "python_ms": python * 1e3,
        "native_us_per_request": native / queued * 1e6,
        "python_us_per_request": python / queued * 1e6,
        "speedup": python / native,
    }


def table(row: dict[str, Any]) -> str:
    alone = row["scheduler_only"]
    return (
        "what is timed (1,000 queued, 10 keys)  | native ms | python ms | speedup\n"
        "---------------------------------------+-----------+-----------+--------\n"
        f"scheduler alone (submit all, drain)    | {alone['native_ms']:9.2f} | "
        f"{alone['python_ms']:9.2f} | {alone['speedup']:6.2f}x\n"
        f"through the runtime's asyncio wrapper  | {row['native_ms']:9.2f} | "
        f"{row['python_ms']:9.2f} | {row['speedup']:6.2f}x"
    )


if __name__ == "__main__":
    print(table(run()))
