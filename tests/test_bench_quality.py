"""bench/quality.py: its ``default`` setting trains what ``hardneg train`` trains by default."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("quality", Path(__file__).resolve().parents[1] / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_default_setting_trains_with_the_cli_default_loss(tmp_path):
    from hardneg.cli import build_parser
    from hardneg.cli.train import _loss_config

    cli = _loss_config(build_parser().parse_args(["train", "data", "--model", "m", "--output", str(tmp_path)]))
    # the bench's own loss flags say otherwise: the default setting must not follow them
    bench_flags = argparse.Namespace(loss="mnrl", scale=5.0, gist_temperature=0.5)
    assert quality.setting_loss("default", bench_flags) == cli
    assert cli.name == "cached-mnrl"  # the declared default (hardneg.train.recipe), spelled out by hand
    assert quality.setting_overrides("default")["loss"] == "cached-mnrl"  # recorded in the setting's result file
    assert quality.setting_loss("dense", bench_flags).name == "mnrl"  # the other settings follow the flags
