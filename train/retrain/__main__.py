"""``python -m train.retrain ARCH --out DIR ...`` (and ``torchrun --nproc_per_node N -m train.retrain ...``):
``nas retrain``'s parser and run without the rest of ``nas`` (:mod:`train.retrain.cli`)."""
import sys

from .cli import main

sys.exit(main())
