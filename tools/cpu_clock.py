"""CPU time of a benchmark: this process and its live children (DataLoader workers), by pid.

Not a test. Unlike wall time, CPU seconds barely move with other load on a shared machine, so the benches
report samples per CPU-second beside samples/s. Per pid, so a worker that starts or exits between two readings
adds only what it spent in between.
"""

from __future__ import annotations

import psutil


def cpu_tree() -> dict[int, float]:
    """CPU seconds (user + system, all threads) of this process and of each live child process, by pid."""
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = t.user + t.system
    return out


def cpu_since(start: dict[int, float], now: dict[int, float] | None = None) -> float:
    """CPU seconds spent between the readings ``start`` and ``now`` (default: a reading taken now)."""
    now = cpu_tree() if now is None else now
    return sum(v - start.get(pid, 0.0) for pid, v in now.items())
