"""Entry point of one process started by ``nas retrain --nproc N`` (through ``torchrun``).

Reads ``{"arch_yaml", "config", "out_dir", "resume"}`` as JSON from ``$NAS_RETRAIN_SPEC`` and
runs :func:`train.retrain.retrain`; a bad setting prints ``nas: error: ...`` on rank 0 and exits 2.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path


def main() -> int:
    from space import SpecError, from_yaml

    from ..engine import failed_at_run_time
    from .config import RetrainConfig
    from .distributed import SPEC_ENV
    from .loop import retrain

    warnings.filterwarnings("ignore", category=FutureWarning)
    spec = json.loads(os.environ[SPEC_ENV])
    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        metrics = retrain(from_yaml(spec["arch_yaml"]), RetrainConfig.from_dict(spec["config"]),
                          out_dir=Path(spec["out_dir"]), resume=spec["resume"],
                          out=lambda s: print(s, flush=True))
    except (SpecError, ValueError) as exc:
        if failed_at_run_time(exc):
            raise
        if main_rank:
            print(f"nas: error: {exc}", file=sys.stderr)
        return 2
    if main_rank:
        print(f"test accuracy {metrics['test_acc']:.4f} after {metrics['epochs']} epochs → "
              f"{spec['out_dir']}/metrics.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
