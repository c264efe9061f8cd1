"""Fault injection: run the CLI with smaller shards, count calls of a function, or die at its N-th call.

Used in-process (reference runs, counting) and by ``driver.py`` in a subprocess that
kills itself with SIGKILL at the chosen point: a real ``kill -9``, at a point the test
draws with a seeded generator.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
from collections.abc import Callable


def resolve(target: str) -> tuple[object, str]:
    """``"pkg.module:Name.attr"`` -> (the object holding ``attr``, ``"attr"``)."""
    module, _, path = target.partition(":")
    holder: object = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        holder = getattr(holder, part)
    return holder, name


def patch(target: str, make_wrapper: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Replace ``target`` by ``make_wrapper(original)``; returns the undo function."""
    holder, name = resolve(target)
    original = holder.__dict__[name] if isinstance(holder, type) else getattr(holder, name)
    function = original.__func__ if isinstance(original, staticmethod) else original
    wrapper = functools.wraps(function)(make_wrapper(function))
    setattr(holder, name, wrapper)
    return lambda: setattr(holder, name, original)


def small_shards(size: int) -> list[Callable[[], None]]:
    """Encoding and teacher scoring in shards of ``size`` rows (so a run has several resume points)."""

    def wrap(original):
        def sharded(*args, **kwargs):
            kwargs["shard_size"] = size
            return original(*args, **kwargs)

        return sharded

    return [patch("hardneg.retrieve.dense:sharded_compute", wrap), patch("hardneg.teacher.rescore:sharded_compute", wrap)]


class Counter:
    """Counts calls of ``target`` (after ``armed_by`` was first entered, if given)."""

    def __init__(self, target: str, armed_by: str | None = None) -> None:
        self.calls, self.armed = 0, armed_by is None
        self.undo = [patch(target, self._wrap)]
        if armed_by is not None:
            self.undo.append(patch(armed_by, self._arm))

    def _wrap(self, original):
        def counted(*args, **kwargs):
            if self.armed:
                self.calls += 1
                self.on_call(self.calls, "before")
            out = original(*args, **kwargs)
            if self.armed:
                self.on_call(self.calls, "after")
            return out

        return counted

    def _arm(self, original):
        def arming(*args, **kwargs):
            self.armed = True
            return original(*args, **kwargs)

        return arming

    def on_call(self, n: int, when: str) -> None:
        pass

    def restore(self) -> None:
        for undo in reversed(self.undo):
            undo()


class Killer(Counter):
    """Sends SIGKILL to this very process at the ``call``-th call of ``target``, ``before`` or ``after`` it runs."""

    def __init__(self, target: str, call: int, when: str = "before", armed_by: str | None = None) -> None:
        self.call, self.when = call, when
        super().__init__(target, armed_by)

    def on_call(self, n: int, when: str) -> None:
        if n == self.call and when == self.when:
            os.kill(os.getpid(), signal.SIGKILL)


class Interrupter(Counter):
    """Raises KeyboardInterrupt (Ctrl-C) at the ``call``-th call of ``target``, before it runs."""

    def __init__(self, target: str, call: int) -> None:
        self.call = call
        super().__init__(target)

    def on_call(self, n: int, when: str) -> None:
        if n == self.call and when == "before":
            raise KeyboardInterrupt
