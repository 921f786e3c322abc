"""The bucket index on the wire, and the worker extension that rebuilds it.

With vLLM's multiprocess engine, `collective_rpc` arguments cross to the engine process through
vLLM's msgpack serializer, which turns a dataclass into a dict and tuples into lists (measured:
`'dict' object has no attribute 'nbytes'` on the first reload). These tests send the index through
that same serializer and through the extension, without starting an engine.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from empathy_rl.weight_buckets import WIRE_FORMAT, BucketIndex, WireFormatError, checksum, pack_all
from rollout.worker_extension import WeightSyncExtension


def _tensors() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("model.embed_tokens.weight", torch.randn(7, 5, generator=g)),
        ("model.norm.weight", torch.randn(5, generator=g).to(torch.bfloat16)),
        ("lm_head.weight", torch.randn(7, 5, generator=g)),
        ("model.layers.0.mlp.up_proj.weight", torch.randn(3, 5, generator=g).to(torch.float16)),
    ]


def _msgpack_round_trip(obj):
    from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder

    return MsgpackDecoder().decode(MsgpackEncoder().encode(obj))


def test_dataclass_index_does_not_survive_vllm_msgpack():
    """The defect: the dataclass itself arrives as something without `.nbytes`."""
    index = pack_all(_tensors(), 64)[0][0]
    arrived = _msgpack_round_trip(index)
    assert not isinstance(arrived, BucketIndex)
    with pytest.raises(AttributeError):
        arrived.nbytes  # noqa: B018


@pytest.mark.parametrize("transport", ["msgpack", "pickle"])
def test_wire_index_round_trips(transport):
    buckets = pack_all(_tensors(), 64)
    assert len(buckets) > 1
    for index, _ in buckets:
        wire = index.to_wire()
        arrived = _msgpack_round_trip(wire) if transport == "msgpack" else pickle.loads(pickle.dumps(wire))
        assert arrived["format"] == WIRE_FORMAT
        assert BucketIndex.from_wire(arrived) == index


def test_wrong_wire_format_is_named():
    index = pack_all(_tensors(), 1 << 20)[0][0]
    wire = index.to_wire()
    with pytest.raises(WireFormatError, match="empathy-rl/bucket-index/0"):
        BucketIndex.from_wire({**wire, "format": "empathy-rl/bucket-index/0"})
    with pytest.raises(WireFormatError, match="list"):
        BucketIndex.from_wire([1, 2])
    bad = {**wire, "tensors": [[*wire["tensors"][0][:1], "complex128", *wire["tensors"][0][2:]]]}
    with pytest.raises(WireFormatError, match="complex128"):
        BucketIndex.from_wire(bad)


class _FakeWorker(WeightSyncExtension):
    """Stands in for vLLM's Worker: the extension must go through `self.reload_weights`, the
    worker's method that sets vLLM's config context, and never reach into the model runner."""

    def __init__(self):
        self.loaded: list[tuple[str, torch.Tensor]] = []

    @property
    def model_runner(self):
        raise AssertionError("the extension bypassed the worker's reload_weights")

    def reload_weights(self, weights_iterator):
        self.loaded = [(n, t.clone()) for n, t in weights_iterator]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_extension_rebuilds_wire_indexes_after_msgpack(as_bytes):
    """Multiprocess engine: bytes buffers and msgpack'ed wire indexes; in-process: tensors."""
    tensors = _tensors()
    buckets = pack_all(tensors, 64)
    payload = [(index.to_wire(), buf.numpy().tobytes() if as_bytes else buf) for index, buf in buckets]
    if as_bytes:
        payload = _msgpack_round_trip(payload)  # pairs arrive as lists, indexes as dicts
    worker = _FakeWorker()
    received = worker.load_weight_buckets(payload, True)
    assert received == checksum(tensors)
    assert [n for n, _ in worker.loaded] == [n for n, _ in tensors]
    for (name, expected), (_, got) in zip(tensors, worker.loaded):
        assert torch.equal(got, expected), name


def test_receive_without_weight_group_names_the_cause():
    worker = _FakeWorker()
    with pytest.raises(RuntimeError, match="no NCCL weight group"):
        worker.receive_weight_buckets([pack_all(_tensors(), 64)[0][0].to_wire()])
