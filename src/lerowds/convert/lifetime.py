"""Worker processes die with the process that started them, even when it is SIGKILLed (the OOM killer):
otherwise pool workers outlive it forever, each blocked on its call-queue pipe."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Make the calling (worker) process get SIGKILL when ``parent_pid`` exits.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die before the call.
    Elsewhere: a daemon thread that polls the parent's pid and exits the process once it changed.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        except (OSError, AttributeError) as e:  # no prctl (a seccomp sandbox?): poll instead
            log.debug("parent-death signal unavailable (%s); polling the parent instead", e)
        else:
            if os.getppid() != parent_pid:  # the parent died before the signal was armed
                os._exit(1)
            return
    threading.Thread(
        target=_poll_parent, args=(parent_pid,), name="lerowds-parent-watch", daemon=True
    ).start()


def _poll_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(POLL_S)
    os._exit(1)
