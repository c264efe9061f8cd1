"""Ctrl-C while hardneg is still importing: exit 130 with one line, never a traceback."""

from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hardneg.cli import main


class _InterruptOn(importlib.abc.MetaPathFinder):
    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname == self.name:
            raise KeyboardInterrupt
        return None


@pytest.mark.parametrize("module", ["hardneg.export", "hardneg.mine", "hardneg.data"])
def test_ctrl_c_while_main_imports_is_one_line(module, tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptOn(module), *sys.meta_path])
    rc = main(["-q", "mine", str(tiny_dir), "-o", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert rc == 130
    assert err.strip().splitlines() == ["hardneg: interrupted; run the same command again to resume from the saved "
                                        "shards"]


def test_ctrl_c_during_the_first_heavy_import_of_the_console_script(tiny_dir, tmp_path):
    """The installed ``hardneg`` command, interrupted while importing numpy (its first heavy import)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys

        class Interrupt(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path, target=None):
                if fullname == "numpy":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, Interrupt())
    """))
    script = Path(sys.executable).with_name("hardneg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([str(script), "mine", str(tiny_dir), "-o", str(tmp_path / "x.jsonl")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["hardneg: interrupted; run the same command again to resume from the "
                                                "saved shards"]
