"""Pack named tensors into a few contiguous byte buckets with a small index, and unpack them.

Weight sync moves the whole policy after every update. One remote call per tensor would cost
hundreds of round trips for an 8B model; instead the learner packs tensors into buckets of about
`sync.bucket_size_mb` and each transport (Ray object store on CPU, NCCL broadcast on GPU) moves one
buffer per bucket. The index (names, dtypes, shapes, offsets) is tiny and travels separately.

This module is pure torch so that both ends (learner and rollout) share one definition and the
format is unit-tested without Ray.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8, torch.int8, torch.bool)}


@dataclass(frozen=True)
class TensorMeta:
    """Where one tensor lives inside its bucket."""

    name: str
    dtype: str  # e.g. "bfloat16"
    shape: tuple[int, ...]
    offset: int  # byte offset in the bucket
    nbytes: int


WIRE_FORMAT = "empathy-rl/bucket-index/1"  # bump when the wire layout below changes


class WireFormatError(ValueError):
    """A bucket index on the wire is not in a format this code understands (names what was found)."""


@dataclass(frozen=True)
class BucketIndex:
    """Everything needed to rebuild the tensors of one bucket from its bytes."""

    tensors: tuple[TensorMeta, ...]
    nbytes: int

    def to_wire(self) -> dict:
        """Plain, versioned form for transports that do not keep Python classes.

        vLLM's multiprocess engine sends `collective_rpc` arguments through msgpack, which turns a
        dataclass into a dict and a tuple into a list; the receiving side would then fail deep in
        the reload (`'dict' object has no attribute 'nbytes'`). Sending only str/int/list/dict and
        a format tag makes the receiver rebuild the index or fail at once with a clear message.
        """
        return {
            "format": WIRE_FORMAT,
            "nbytes": self.nbytes,
            "tensors": [[m.name, m.dtype, list(m.shape), m.offset, m.nbytes] for m in self.tensors],
        }

    @classmethod
    def from_wire(cls, wire: "dict | BucketIndex") -> "BucketIndex":
        """Rebuild an index from `to_wire()` output (after any msgpack/pickle round trip)."""
        if isinstance(wire, BucketIndex):
            return wire
        if not isinstance(wire, dict) or wire.get("format") != WIRE_FORMAT:
            found = wire.get("format") if isinstance(wire, dict) else type(wire).__name__
            raise WireFormatError(f"bucket index format {found!r} is not {WIRE_FORMAT!r}; learner and rollout run different code")
        metas = []
        for name, dtype, shape, offset, nbytes in wire["tensors"]:
            if dtype not in _DTYPES:
                raise WireFormatError(f"bucket index: tensor {name} has unknown dtype {dtype!r}")
            metas.append(TensorMeta(str(name), str(dtype), tuple(int(d) for d in shape), int(offset), int(nbytes)))
        return cls(tuple(metas), int(wire["nbytes"]))


ALIGN = 16  # byte alignment of every tensor in a bucket: any dtype can be viewed in place


def plan_buckets(named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[BucketIndex]:
    """Group tensors, in order, into buckets of at most `bucket_bytes` (a larger tensor gets its own).

    Each tensor starts at a multiple of `ALIGN` bytes, so mixed dtypes in one bucket unpack as views.
    """
    if bucket_bytes <= 0:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes}")
    buckets: list[BucketIndex] = []
    current: list[TensorMeta] = []
    offset = 0
    for name, tensor in named_tensors:
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {name}: dtype {tensor.dtype} cannot be packed")
        nbytes = tensor.numel() * tensor.element_size()
        start = -(-offset // ALIGN) * ALIGN
        if current and start + nbytes > bucket_bytes:
            buckets.append(BucketIndex(tuple(current), offset))
            current, start = [], 0
        current.append(TensorMeta(name, dtype, tuple(tensor.shape), start, nbytes))
        offset = start + nbytes
    if current:
        buckets.append(BucketIndex(tuple(current), offset))
    return buckets


def pack_bucket(index: BucketIndex, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """Copy the tensors named in `index` into one new flat uint8 buffer on `device`."""
    buffer = torch.zeros(index.nbytes, dtype=torch.uint8, device=device)  # padding bytes stay defined
    for meta in index.tensors:
        write_tensor(buffer, meta, tensors[meta.name])
    return buffer


def bucket_in(scratch: torch.Tensor, index: BucketIndex) -> torch.Tensor:
    """`scratch[:index.nbytes]` with the padding between tensors zeroed, to be filled by `write_tensor`.

    The learner packs every bucket into one buffer kept across buckets and syncs: at ~100M
    parameters, allocating a fresh 256 MiB `torch.zeros` per bucket (zeroing and page faults) took
    longer than copying the weights into it. The padding is rewritten because the previous bucket
    left its bytes there, so the filled bucket is byte-identical to `pack_bucket`'s.
    """
    if scratch.dtype != torch.uint8 or scratch.dim() != 1 or scratch.numel() < index.nbytes:
        raise ValueError(f"scratch buffer of {scratch.numel()} {scratch.dtype} elements cannot hold a bucket of {index.nbytes} bytes")
    buffer = scratch[: index.nbytes]
    end = 0
    for meta in index.tensors:
        if meta.offset > end:
            buffer[end : meta.offset].zero_()
        end = meta.offset + meta.nbytes
    return buffer


def write_tensor(buffer: torch.Tensor, meta: TensorMeta, tensor: torch.Tensor) -> None:
    """Copy one tensor's bytes to its place in a bucket buffer: a single torch copy (across devices too)."""
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes != meta.nbytes:
        raise ValueError(f"tensor {meta.name} has {nbytes} bytes, its bucket index says {meta.nbytes} (the model changed since the plan)")
    src = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    buffer[meta.offset : meta.offset + meta.nbytes].copy_(src, non_blocking=False)


def unpack_bucket(index: BucketIndex, buffer: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(name, tensor)` views into `buffer` (no copy). The caller copies them into the model."""
    if buffer.dtype != torch.uint8 or buffer.numel() != index.nbytes:
        raise ValueError(f"bucket buffer has {buffer.numel()} {buffer.dtype} elements, index expects {index.nbytes} uint8")
    for meta in index.tensors:
        raw = buffer[meta.offset : meta.offset + meta.nbytes]
        yield meta.name, raw.view(_DTYPES[meta.dtype]).reshape(meta.shape)


def pack_all(named_tensors: list[tuple[str, torch.Tensor]], bucket_bytes: int) -> list[tuple[BucketIndex, torch.Tensor]]:
    """Plan and pack in one go (CPU path)."""
    by_name = dict(named_tensors)
    return [(index, pack_bucket(index, by_name)) for index in plan_buckets(named_tensors, bucket_bytes)]


def checksum(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes, in name order: equal weights give equal
    checksums, and the same bytes under another dtype or shape (a wrong view) give another one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(f"|{str(tensor.dtype).removeprefix('torch.')}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
