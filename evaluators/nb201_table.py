"""The NAS-Bench-201 accuracy table on CIFAR-10, read offline from AnalogNAS-Bench's ``data.anb``.

The optional package ``analog-nasbench==0.1.3`` (``pip install 'nas[nb201]'``) ships ``data.anb``:
a pickle of 15,625 ``analognasbench.data.Architecture`` records (IBM/analog-nas; every NAS-Bench-201
cell trained on CIFAR-10 with their protocol: 200 epochs, SGD+Nesterov, lr 0.1, cosine, wd 5e-4,
batch 256), keyed by 6-tuples of op indices. We find the file through ``importlib.util.find_spec``
without importing the package (its ``__init__`` imports ``pkg_resources``, gone from setuptools
≥ 81) and unpickle it with an ``Unpickler`` that maps the two record classes to plain stand-ins
and refuses every other global, so none of the package's code runs. The file's sha256 is checked.

Encoding of the keys (tests/evaluators/test_nb201_table.py proves each step from the data):

1. **Position → edge, up to the DAG's mirror.** 341 cells score exactly 10% (chance). With op index
   1 as ``none``, a connectivity computation over the 4-node DAG marks the cells whose output node
   no path reaches: of all 720 assignments of tuple positions to edges, exactly two give that same
   set of 341 cells, and no other op index as ``none`` gives it under any assignment. The two are
   positions = (1←0), (2←0), (3←0), (2←1), (3←1), (3←2) (edges grouped by source node) and its
   mirror (node k ↔ 3-k, edges reversed), which connectivity cannot tell apart; mirrored cells only
   reverse the op order along each path. **What decided the mirror** is the generating code: the
   benchmark's ``training_script.py`` builds each network with NASLib's
   ``NasBench201SearchSpace.set_spec(op_indices)``, whose ``EDGE_LIST`` is
   ((1,2), (1,3), (1,4), (2,3), (2,4), (3,4)) on nodes 1..4 — the source-grouped order.
2. **0 = skip.** Among connected cells using only ops {0, none}, the single-path cells score the same
   whatever the path's length (86.41, 86.39, 86.43% for 1, 2, 3 ops in series): the op composes
   with itself into itself. A pool (a wider blur) or a conv (a deeper net) changes with the length:
   op 4 gives 75.3, 67.7, 62.2%, op 3 88.8, 87.6, 86.7%, op 2 91.6, 90.5, 88.2%.
3. **4 = avg-pool, 3 = conv1×1 (the case the data decides by normalisation).** As input→output
   paths are added in parallel (cells of one op and none, mean over 1, 2, 3, 4 paths), op 0 falls
   86.4 → 84.3 → 71.0 → 60.8% and op 4 falls 72.2 → 67.9 → 54.3 → 50.3%: their sums are not
   normalised, so each cell scales its input by the path count and five cells compound it. Op 3
   (88.3 → 88.9 → 88.7 → 89.5%) and op 2 (91.1 → 92.5 → 92.8 → 93.2%) do not fall: their edges end
   in BN. So 4 is the un-normalised, parameter-free blur and 3, like 2, a ReLU-conv-BN op.
4. **2 = conv3×3, 3 = conv1×1.** The all-2 cell reaches 93.24% and the all-3 cell 89.53%, and the
   published NAS-Bench-201 optimum (94.37% under its own protocol),
   ``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``,
   is tuple (2, 2, 0, 2, 2, 2): 93.99%, third of 15,625 here, 0.08 below the best cell
   (2, 2, 0, 2, 3, 2) = 94.07%; with 2 and 3 swapped it would be (3, 3, 0, 3, 3, 3) = 90.95%.
   This agrees with NASLib's ``OP_NAMES`` (Identity, Zero, ReLUConvBN3x3, ReLUConvBN1x1, AvgPool).

Columns: ``baseline_accuracy`` (digital training; CIFAR-10 test top-1 %, which the benchmark's script
averages over 25 passes of the test set under the training augmentation), ``ptq_accuracy`` and
``qat_accuracy`` (8-bit post-training / quantisation-aware), ``noisy_accuracy`` (the baseline
weights on simulated analog hardware), ``analog_accuracy`` (hardware-aware training), and the drift
of the noisy and analog evaluations after 60 s, 1 h, 1 day and 30 days (mean and spread; the
package's ``baseline_drift_*`` are its README's ``noisy_drift_*``).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from space.blocks.nb201 import NB201_EDGES, NB201_OPS

MISSING = "nb201: the NAS-Bench-201 table needs the optional extra: pip install 'nas[nb201]'"
PACKAGE = "analognasbench"
DATA_FILE = "data.anb"
DATA_SHA256 = "85f3435b877aa2d36268d55ce07f6ff6d73643d17a840f1941745da5eb80db32"
TABLE_OPS = ("skip", "none", "conv3x3", "conv1x1", "avg_pool")
"""Op index in the file's keys → our op name."""
TABLE_EDGES = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
"""Position in the file's keys → edge ``(to_node, from_node)``."""
DRIFT_SECONDS = (60, 3600, 86400, 2592000)
ACCURACIES = ("baseline_accuracy", "ptq_accuracy", "qat_accuracy", "noisy_accuracy", "analog_accuracy")


class Nb201TableMissing(ImportError):
    """The optional package holding the table is not installed (the message says how to get it)."""


@dataclass(frozen=True)
class Nb201Entry:
    """One cell's row: accuracies in %, drift as ``((seconds, mean, spread), ...)`` per evaluation."""

    ops: tuple[str, ...]
    baseline_accuracy: float
    ptq_accuracy: float
    qat_accuracy: float
    noisy_accuracy: float
    analog_accuracy: float
    noisy_drift: tuple[tuple[int, float, float], ...]
    analog_drift: tuple[tuple[int, float, float], ...]


class _Record:
    """Stand-in for ``analognasbench.data.Architecture``: pickle's BUILD fills ``__dict__``."""


class _Drift:
    """Stand-in for ``analognasbench.data.DriftMeasurement`` (``value``, ``uncertainty``)."""


class _TableUnpickler(pickle.Unpickler):
    STAND_INS = {(f"{PACKAGE}.data", "Architecture"): _Record, (f"{PACKAGE}.data", "DriftMeasurement"): _Drift}

    def find_class(self, module: str, name: str) -> type:
        try:
            return self.STAND_INS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"nb201: {DATA_FILE} refers to {module}.{name}; only the two record "
                                         f"classes of {PACKAGE}.data are allowed") from None


def find_table_file() -> Path:
    """``data.anb`` inside the installed package, found without importing it; :class:`Nb201TableMissing` if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / DATA_FILE
        if path.is_file():
            return path
    raise Nb201TableMissing(MISSING)


def read_raw(path: Path) -> dict[tuple[int, ...], object]:
    """The file's records as stored: op-index tuple → record with the package's attribute names."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != DATA_SHA256:
        raise ValueError(f"nb201: {path}: sha256 {digest} is not analog-nasbench 0.1.3's {DATA_SHA256}")
    return _TableUnpickler(io.BytesIO(data)).load()


def table_ops(key: tuple[int, ...]) -> tuple[str, ...]:
    """Our op names, in our edge order (:data:`space.blocks.nb201.NB201_EDGES`), of a file key."""
    by_edge = {edge: TABLE_OPS[i] for edge, i in zip(TABLE_EDGES, key)}
    return tuple(by_edge[edge] for edge in NB201_EDGES)


def _entry(ops: tuple[str, ...], rec: object) -> Nb201Entry:
    def drift(prefix: str) -> tuple[tuple[int, float, float], ...]:
        out = []
        for t in DRIFT_SECONDS:
            d = getattr(rec, f"{prefix}_drift_{t}")
            out.append((t, float(d.value), float(d.uncertainty)))
        return tuple(out)

    accs = {name: float(getattr(rec, name)) for name in ACCURACIES}
    return Nb201Entry(ops=ops, **accs, noisy_drift=drift("baseline"), analog_drift=drift("analog"))


class Nb201Table(Mapping):
    """Read-only mapping: cell ops (6 of our op names, in our edge order) → :class:`Nb201Entry`."""

    def __init__(self, rows: Mapping[tuple[str, ...], Nb201Entry]) -> None:
        self._rows = MappingProxyType(dict(rows))

    def __getitem__(self, ops: tuple[str, ...]) -> Nb201Entry:
        try:
            return self._rows[tuple(ops)]
        except (KeyError, TypeError):
            raise KeyError(f"nb201: no cell {ops!r}; a cell is 6 op names from {', '.join(NB201_OPS)}") from None

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def best(self, column: str = "baseline_accuracy") -> Nb201Entry:
        """The row with the highest ``column`` (one of the accuracy columns)."""
        if column not in ACCURACIES:
            raise ValueError(f"column: must be one of {', '.join(ACCURACIES)}, got {column!r}")
        return max(self._rows.values(), key=lambda e: getattr(e, column))


@functools.lru_cache(maxsize=1)
def load_nb201_table() -> Nb201Table:
    """The whole table (read once per process, about a second); :class:`Nb201TableMissing` without the extra."""
    raw = read_raw(find_table_file())
    return Nb201Table({table_ops(key): _entry(table_ops(key), rec) for key, rec in raw.items()})
