"""One conversion at a time per output directory (per task of a multi-machine conversion).

A run holds ``fcntl.flock`` locks in ``OUT/.lerowds/`` until it ends (the kernel drops them when the process
dies, so a killed run leaves nothing to clean up): a whole run or ``--finalize`` holds ``lock`` exclusively;
task ``I`` of ``--num-tasks N`` holds ``lock`` shared (tasks run side by side) and ``lock-task-I`` exclusively.
Each holder writes its pid into the file it holds exclusively, so that a refused run can name it. The
exclusive holder of ``lock`` deletes the task lock files (no task can hold one meanwhile), so a finished
output holds the same files however it was produced.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from lerowds.errors import ConversionError

log = logging.getLogger(__name__)

LOCK_DIR = ".lerowds"
LOCK_NAME = "lock"


def _holders(state: Path) -> str:
    pids = []
    for f in sorted(state.glob(f"{LOCK_NAME}*")):
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        if text:
            pids.append(text)
    return ", ".join(pids) or "unknown"


@contextmanager
def _flock(path: Path, exclusive: bool, output: Path) -> Iterator[None]:
    """Hold a lock on ``path`` (none, with a warning, where the file system cannot lock)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = True
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConversionError(
                f"{output}: another conversion is running (pid {_holders(path.parent)}); wait for it to end, "
                "or pick another --output"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            log.warning("%s: this file system cannot lock (%s): nothing stops a second conversion", path, e)
            locked = False
        if locked and exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if locked and exclusive:
                os.ftruncate(fd, 0)  # a finished output's lock files are empty (and identical)
    finally:
        os.close(fd)


@contextmanager
def output_lock(output: Path, num_tasks: int = 1, task_index: int = 0) -> Iterator[None]:
    """Hold the output directory's lock(s) for a run; ``ConversionError`` naming the holder's pid if
    another run holds them."""
    state = output / LOCK_DIR
    state.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if num_tasks == 1:
            stack.enter_context(_flock(state / LOCK_NAME, True, output))
            for stale in state.glob(f"{LOCK_NAME}-task-*"):  # no task runs: each would hold LOCK_NAME shared
                stale.unlink(missing_ok=True)
        else:
            stack.enter_context(_flock(state / LOCK_NAME, False, output))
            stack.enter_context(_flock(state / f"{LOCK_NAME}-task-{task_index}", True, output))
        yield
