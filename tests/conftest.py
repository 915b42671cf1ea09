"""Shared fixtures. CPU only; a fixed seed; the digits bundle (loaded once); the shared CIFAR-10 subset located by
NAS_DATA_DIR.

Training tests pin torch to one intra-op thread: on this shared 2-core machine two threads under load were
measured 10× slower than one, and results are only bit-identical at a fixed count.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from train import DataBundle, load_dataset

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAS_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # bit-identical results need a fixed thread count; 1 is fastest on a busy 2-core box
    yield


@pytest.fixture(autouse=True)
def _sigint_handler_restored():
    """Each test starts with this process's SIGINT handler and leaves it so: ``search.cli.main`` run in-process
    installs the CLI's (search/interrupt.py), whose first Ctrl-C arms a watchdog that ends the process 60 s later,
    which a later test that sends itself a Ctrl-C must not trigger."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def cifar_dir() -> Path:
    """The shared CIFAR-10 subset; the test fails (not skips) when it is missing: CI must have it."""
    path = SHARED_DATA / "cifar-10-batches-py"
    assert path.is_dir(), f"shared CIFAR-10 subset not found at {path}; set NAS_DATA_DIR"
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return load_dataset("digits")


@pytest.fixture
def one_thread():
    torch.set_num_threads(1)
    yield
