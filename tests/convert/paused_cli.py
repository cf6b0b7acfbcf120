"""``python paused_cli.py N ARGS...``: the ``lerowds`` CLI with shard writers that stop for good once N episodes
are written in a process (each pool worker counts its own), so a test can SIGKILL a conversion at a known
point instead of racing it. The patch is made at import, so spawned workers (which import this script as
``__mp_main__``) get it as well as forked ones."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lerowds.convert import shard
from lerowds.format import ShardWriter

_written = 0


class _PausingWriter(ShardWriter):
    def add_episode(self, members: Sequence[Any]) -> Any:
        global _written
        location = super().add_episode(members)
        _written += 1
        if _written == int(sys.argv[1]):
            threading.Event().wait()  # until killed
        return location


def paused(after: int, command: list[str]) -> list[str]:
    """``command`` (``python -m lerowds.cli ...``) run through this script, pausing after ``after`` episodes."""
    if command[1:3] != ["-m", "lerowds.cli"]:
        raise ValueError(f"expected a 'python -m lerowds.cli ...' command, got {command[:3]}")
    return [command[0], __file__, str(after), *command[3:]]


def wait_for(what: str, cond: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll ``cond`` until it holds (the paused process has reached its failpoint); fail naming ``what`` if the
    process ends first or ``timeout_s`` passes (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


if __name__ in ("__main__", "__mp_main__"):
    shard.ShardWriter = _PausingWriter  # type: ignore[misc]
if __name__ == "__main__":
    from lerowds.cli import main

    sys.exit(main(sys.argv[2:]))
