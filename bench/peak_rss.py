"""Peak resident memory of a child process, watched while it runs (Linux).

One copy for ``bench/memory.py`` and ``tests/test_memory.py``: the child's peak is its own
``ru_maxrss`` (``os.wait4``); while it runs, ``/proc/PID/status``'s ``VmHWM`` is polled so a
child that passes a bound is stopped early instead of pushing the machine into swap.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import NamedTuple


class ChildPeak(NamedTuple):
    """How a watched child ended: its peak RSS in MB, exit code, whether it was stopped, and wall seconds."""

    peak_mb: float
    exit: int
    stopped: bool
    seconds: float


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set so far (Linux /proc), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_watched(argv: list[str], log: Path, env: dict[str, str], stop_above_mb: float) -> ChildPeak:
    """Run ``argv`` with ``env`` (stdout and stderr to ``log``); stop it once its resident set passes
    ``stop_above_mb``."""
    t0, stopped = time.perf_counter(), False
    with open(log, "wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            return ChildPeak(usage.ru_maxrss / 1024, child.returncode, stopped, time.perf_counter() - t0)
        if not stopped and vm_hwm_mb(child.pid) > stop_above_mb:
            child.kill()
            stopped = True
        time.sleep(0.2)
