"""Fixtures for the evaluator tests: the digits bundle (loaded once) and a one-thread CPU.

Training tests pin torch to one intra-op thread: on this shared 2-core machine two threads under
load were measured 10× slower than one, and results are only bit-identical at a fixed count.
"""
from __future__ import annotations

import pytest
import torch

from evaluators import DataBundle, load_dataset


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return load_dataset("digits")


@pytest.fixture
def one_thread():
    torch.set_num_threads(1)
    yield
