"""Run ``hardneg`` in a subprocess with a fault: ``python driver.py SPEC -- ARGS...``.

SPEC is JSON: ``{"shard_size": 32, "torch_threads": 1, "kill": {"target": ..., "call": N, "when": "before",
"armed_by": null}}``. The process kills itself with SIGKILL at that point, like ``kill -9``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import faults

    spec = json.loads(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1 :]
    if spec.get("torch_threads"):
        import torch

        torch.set_num_threads(spec["torch_threads"])
    if spec.get("shard_size"):
        faults.small_shards(spec["shard_size"])
    if spec.get("kill"):
        faults.Killer(**spec["kill"])
    from hardneg.cli import main

    sys.exit(main(args))
