"""Peak resident memory of a child process, watched while it runs (Linux).

One copy for ``bench/memory.py`` and ``tests/test_memory.py``: the child's peak is its own
``ru_maxrss`` (``os.wait4``); while it runs, ``/proc/PID/status``'s ``VmHWM`` is polled so a
child that passes a bound is stopped early instead of pushing the machine into swap.
Also the per-stage readings the other memory benches take of their own process:
:func:`status_mb` (``VmRSS``, ``VmHWM``, ``RssAnon``...) and :func:`reset_peak`; and
:func:`run_with_src`, which runs a bench script's own child on another checkout's ``src``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


class ChildPeak(NamedTuple):
    """How a watched child ended: its peak RSS in MB, exit code, whether it was stopped, and wall seconds."""

    peak_mb: float
    exit: int
    stopped: bool
    seconds: float


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``, ...) in MiB;
    NaN when the field is absent, 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return float("nan")


def reset_peak() -> None:
    """Restart this process's high-water mark (``VmHWM``) from its current RSS (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


@contextlib.contextmanager
def polled_peak(field: str = "RssAnon", every_s: float = 0.005) -> Iterator[dict]:
    """Poll ``field`` of this process on a thread while the block runs; the yielded dict's ``"mb"``
    is the highest reading. For fields the kernel keeps no high-water mark of (``RssAnon``: the
    memory that is not file cache)."""
    peak = {"mb": status_mb(field)}
    done = threading.Event()

    def poll() -> None:
        while not done.wait(every_s):
            peak["mb"] = max(peak["mb"], status_mb(field))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak["mb"] = max(peak["mb"], status_mb(field))


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set so far (Linux /proc), 0 once it is gone."""
    return status_mb("VmHWM", pid)


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


def run_with_src(script: str, src: Path, *child_args: str) -> dict:
    """Run ``script --child CHILD_ARGS`` in a new interpreter importing hardneg from ``src`` (one checkout
    against another, each in its own process); its last stdout line parsed as JSON, or ``{"error": ...}``."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(script).parent}"}
    proc = subprocess.run([sys.executable, script, "--child", *child_args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
