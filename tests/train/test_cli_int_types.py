"""The integer option types give argparse's one-line error (exit 2) naming the option and what is valid."""
from __future__ import annotations

import argparse

import pytest

from train.cli_options import non_negative_int, positive_int


def parse(kind, value: str, capsys) -> tuple[int | None, str]:
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--n", type=kind)
    try:
        return ap.parse_args(["--n", value]).n, ""
    except SystemExit as exc:
        assert exc.code == 2
        return None, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("kind, value, expected", [(positive_int, "1", 1), (positive_int, "17", 17),
                                                    (non_negative_int, "0", 0), (non_negative_int, "3", 3)])
def test_accepted(kind, value, expected, capsys) -> None:
    assert parse(kind, value, capsys) == (expected, "")


@pytest.mark.parametrize("kind, value, what", [
    (positive_int, "0", "must be a positive integer, got '0'"),
    (positive_int, "-2", "must be a positive integer, got '-2'"),
    (positive_int, "1.5", "must be a positive integer, got '1.5'"),
    (positive_int, "many", "must be a positive integer, got 'many'"),
    (non_negative_int, "-1", "must be an integer >= 0, got '-1'"),
    (non_negative_int, "x", "must be an integer >= 0, got 'x'"),
])
def test_refused_in_one_line(kind, value, what, capsys) -> None:
    value_out, line = parse(kind, value, capsys)
    assert value_out is None
    assert line == f"x: error: argument --n: {what}"
