"""Ports a learner hands out: the DeepSpeed rendezvous and the NCCL weight group never share one."""

from __future__ import annotations

import socket

import pytest

from empathy_rl.config import load_config
from learner.actor import LearnerWorker


def _worker(*overrides: str) -> LearnerWorker:
    return LearnerWorker(load_config("configs/tiny-cpu.yaml", ["model.path=unused", *overrides]), rank=0, world_size=1)


def test_weight_group_port_is_the_configured_one_or_a_fresh_free_one():
    assert _worker("sync.nccl_port=29555").weight_group_address()[1] == 29555
    with socket.socket() as store:  # rank 0's TCPStore holds the DeepSpeed master port while the run lives
        store.bind(("", 0))
        store.listen()
        master = store.getsockname()[1]
        for _ in range(20):
            port = _worker("sync.nccl_port=0").weight_group_address()[1]
            assert port > 0 and port != master


def test_a_taken_master_port_is_an_error_at_once():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            _worker(f"learner.master_port={port}").address()
