"""How the benchmarks time a call: the median over repeats of wall and of process CPU seconds."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process, all threads) per call."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)
