"""Threads started together that hand their first failure back to the test."""

import threading
from collections.abc import Callable


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Starts `count` threads together (a barrier) and re-raises the first failure."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(30)
            work(index)
        except BaseException as error:  # handed to the test thread
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a thread never finished"
    if failures:
        raise failures[0]
