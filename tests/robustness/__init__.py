"""The robustness suite: bad input of every kind, kill -9 at random points, damaged caches.

- test_bad_input.py: each kind of bad input gives one ``hardneg: error:`` line, the right
  exit code, no traceback, and leaves every file that was there byte-identical.
- test_kill.py: ``mine`` (during encoding, after candidates, during export), ``rescore``
  and ``train`` (around a checkpoint) killed with SIGKILL at a seeded random point, then
  run again: the output equals an uninterrupted run's.
- test_caches.py: each kind of cached artefact damaged in turn: noticed, rebuilt with one
  warning, the same output.
- test_interrupt.py: Ctrl-C while the command is still importing.

Everything runs in-process through ``hardneg.cli.main`` with tiny random models, except
the runs that are killed (subprocesses, ``driver.py``).
"""
