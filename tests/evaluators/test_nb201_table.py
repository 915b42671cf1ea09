"""The NAS-Bench-201 table read offline: the key encoding proven from the data, read-only, no package code run.

The connectivity, path and naming conventions below are written here from the paper and from NASLib (the code
that generated the table), independently of evaluators/nb201_table.py.
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import pickle
import statistics
import sys
from collections import defaultdict

import pytest

from evaluators import nb201_table as nt
from space.blocks.nb201 import NB201_EDGES, nb201_arch_str, parse_nb201_ops

HAVE_TABLE = importlib.util.find_spec(nt.PACKAGE) is not None
needs_table = pytest.mark.skipif(not HAVE_TABLE, reason=nt.MISSING)
DAG_EDGES = [(to, frm) for to in (1, 2, 3) for frm in range(to)]
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def raw():
    return nt.read_raw(nt.find_table_file())


@pytest.fixture(scope="module")
def table():
    return nt.load_nb201_table()


def _output_reached(alive: set[tuple[int, int]]) -> bool:
    reached = {0}
    for node in (1, 2, 3):
        if any((node, frm) in alive and frm in reached for frm in range(node)):
            reached.add(node)
    return 3 in reached


def _paths(ops_by_edge: dict[tuple[int, int], str]) -> list[list[str]]:
    """Op sequences along every input→output path without a `none` edge."""
    def walk(node: int, seq: list[str]) -> list[list[str]]:
        if node == 3:
            return [seq]
        return [p for (to, frm), op in ops_by_edge.items() if frm == node and op != "none"
                for p in walk(to, seq + [op])]
    return walk(0, [])


@needs_table
def test_chance_cells_are_the_disconnected_ones_under_exactly_one_edge_order_and_its_mirror(raw):
    chance = {k for k, r in raw.items() if r.baseline_accuracy == 10.0}
    assert len(raw) == 5 ** 6 and len(chance) == 341
    matches = set()
    for none in range(5):
        by_mask = defaultdict(list)  # which positions hold `none` decides connectivity
        for key in raw:
            by_mask[tuple(op == none for op in key)].append(key)
        for order in itertools.permutations(DAG_EDGES):
            cut = {mask for mask in by_mask if not _output_reached({e for e, dead in zip(order, mask) if not dead})}
            if sum(len(by_mask[m]) for m in cut) == 341 and all(tuple(op == none for op in k) in cut for k in chance):
                matches.add((none, order))
    mirror = tuple((3 - frm, 3 - to) for to, frm in nt.TABLE_EDGES)
    assert matches == {(1, nt.TABLE_EDGES), (1, mirror)}
    assert nt.TABLE_OPS[1] == "none"


@needs_table
def test_keys_follow_naslibs_op_indices_convention(raw):
    # NASLib (conversions.py): OP_NAMES_NB201 by index; EDGE_LIST on nodes 1..4; the arch string lists, for each
    # target node in turn, its incoming edges by source node
    naslib_ops = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
    naslib_edges = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    for key in raw:
        by_edge = {(j, i): naslib_ops[op] for (i, j), op in zip(naslib_edges, key)}
        names = [f"{by_edge[(j, i)]}~{i - 1}" for j, i in sorted(by_edge, key=lambda e: (e[0], e[1]))]
        assert nb201_arch_str(nt.table_ops(key)) == "|{}|+|{}|{}|+|{}|{}|{}|".format(*names)


def _single_path_means(table, op: str) -> dict[int, float]:
    """Mean accuracy of cells (only `op` and `none`) whose one input→output path has 1, 2 or 3 edges."""
    by_length = defaultdict(list)
    for ops in itertools.product((op, "none"), repeat=6):
        paths = _paths(dict(zip(NB201_EDGES, ops)))
        if len(paths) == 1:
            by_length[len(paths[0])].append(table[ops].baseline_accuracy)
    return {n: statistics.mean(v) for n, v in sorted(by_length.items())}


@needs_table
def test_skip_is_the_op_that_composes_into_itself(table):
    spans = {op: max(m.values()) - min(m.values()) for op in ("skip", "conv1x1", "conv3x3", "avg_pool")
             for m in [_single_path_means(table, op)]}
    assert spans["skip"] < 0.3  # one skip or three in series: the same network
    assert min(spans["conv1x1"], spans["conv3x3"], spans["avg_pool"]) > 2.0


def _mean_by_path_count(table, op: str) -> dict[int, float]:
    by_count = defaultdict(list)
    for ops in itertools.product((op, "none"), repeat=6):
        n = len(_paths(dict(zip(NB201_EDGES, ops))))
        if n:
            by_count[n].append(table[ops].baseline_accuracy)
    return {n: statistics.mean(v) for n, v in sorted(by_count.items())}


@needs_table
def test_only_the_normalised_ops_keep_accuracy_as_parallel_paths_add_up(table):
    for op in ("skip", "avg_pool"):  # un-normalised sums compound cell after cell
        means = _mean_by_path_count(table, op)
        assert means[3] < means[1] - 10 and means[4] < means[1] - 20, (op, means)
    for op in ("conv1x1", "conv3x3"):  # every edge ends in BN
        means = _mean_by_path_count(table, op)
        assert means[4] >= means[1] and means[3] >= means[1], (op, means)
    pool = _single_path_means(table, "avg_pool")  # and a blur compounds along a path
    assert pool[1] - pool[2] > 5 and pool[2] - pool[3] > 3


@needs_table
def test_conv3x3_is_the_stronger_conv_and_the_published_optimum_ranks_near_the_top(table):
    assert table[("conv3x3",) * 6].baseline_accuracy > table[("conv1x1",) * 6].baseline_accuracy + 3
    best = table.best()
    assert best.ops == ("conv3x3", "conv3x3", "conv3x3", "skip", "conv1x1", "conv3x3")
    assert best.baseline_accuracy == pytest.approx(94.07, abs=0.005)
    published = table[parse_nb201_ops(BEST_CIFAR10)]
    ranked = sorted(table.values(), key=lambda e: -e.baseline_accuracy)
    assert ranked.index(published) < 5 and best.baseline_accuracy - published.baseline_accuracy < 0.1
    swapped = tuple({"conv3x3": "conv1x1", "conv1x1": "conv3x3"}.get(o, o) for o in published.ops)
    assert table[swapped].baseline_accuracy < published.baseline_accuracy - 2


@needs_table
def test_table_is_read_only_and_runs_none_of_the_packages_code(table):
    assert len(table) == 15625 and sys.modules.get(nt.PACKAGE) is None
    entry = table[("conv3x3",) * 6]
    with pytest.raises(TypeError):
        table[("conv3x3",) * 6] = entry
    with pytest.raises(AttributeError):
        entry.baseline_accuracy = 100.0
    with pytest.raises(KeyError, match="no cell"):
        table[("conv5x5",) * 6]
    assert [t for t, _, _ in entry.analog_drift] == [60, 3600, 86400, 2592000]
    with pytest.raises(ValueError, match="column"):
        table.best("latency")


def test_unpickler_refuses_any_other_global():
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        nt._TableUnpickler(io.BytesIO(pickle.dumps(print))).load()


def test_a_file_of_other_content_is_rejected(tmp_path):
    path = tmp_path / "data.anb"
    path.write_bytes(pickle.dumps({}))
    with pytest.raises(ValueError, match="sha256"):
        nt.read_raw(path)


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setattr(nt.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(nt.Nb201TableMissing) as err:
        nt.find_table_file()
    assert str(err.value) == "nb201: the NAS-Bench-201 table needs the optional extra: pip install 'nas[nb201]'"
