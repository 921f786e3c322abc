"""Tests for the weight-sync bucket format: planning, pack/unpack round trip, checksums."""

from __future__ import annotations

import pytest
import torch

from empathy_rl.weight_buckets import ALIGN, BucketIndex, bucket_in, checksum, pack_all, pack_bucket, plan_buckets, unpack_bucket, write_tensor


def _tensors(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Assorted dtypes and shapes, ordered so that every offset is a multiple of its element size
    (see `test_mixed_dtypes_with_unaligned_offsets_round_trip` for the unaligned case)."""
    g = torch.Generator().manual_seed(seed)
    return [
        ("embed.weight", torch.randn(7, 5, generator=g)),
        ("layer.0.scale", torch.tensor(3.25)),  # 0-d
        ("layer.0.bf16", torch.randn(3, 4, generator=g).to(torch.bfloat16)),
        ("layer.0.empty", torch.empty(0, 3)),
        ("layer.0.fp16", torch.randn(2, 3, 4, generator=g).to(torch.float16)),
        ("layer.0.steps", torch.arange(-5, 6, dtype=torch.int64)),
        ("layer.1.empty_i64", torch.empty(0, dtype=torch.int64)),
        ("lm_head.weight", torch.randn(1, 9, generator=g)),
        ("layer.1.bf16_scalar", torch.tensor(-1.5, dtype=torch.bfloat16)),
        ("mask", torch.tensor([True, False, True])),
    ]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unpack_all(packed: list[tuple[BucketIndex, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    return [item for index, buffer in packed for item in unpack_bucket(index, buffer)]


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket_bytes", [1, 16, 64, 100, 10_000])
def test_plan_respects_bucket_size_and_order(bucket_bytes: int) -> None:
    tensors = _tensors()
    sizes = {name: _nbytes(t) for name, t in tensors}
    buckets = plan_buckets(tensors, bucket_bytes)
    assert [m.name for b in buckets for m in b.tensors] == [name for name, _ in tensors]
    for b in buckets:
        assert b.tensors, "no empty buckets"
        # tensors sit in order at ALIGN-byte boundaries, without overlap or more padding than needed
        end = 0
        for m in b.tensors:
            assert m.offset % ALIGN == 0
            assert m.offset == -(-end // ALIGN) * ALIGN
            assert m.nbytes == sizes[m.name]
            end = m.offset + m.nbytes
        assert b.nbytes == end
        # only a bucket holding one tensor (that is larger than the bucket) may exceed the size
        assert b.nbytes <= bucket_bytes or (len([m for m in b.tensors if m.nbytes]) == 1)


def test_oversized_tensor_gets_its_own_bucket() -> None:
    tensors = [
        ("a", torch.zeros(2)),  # 8 bytes
        ("big", torch.zeros(100)),  # 400 bytes > bucket
        ("b", torch.zeros(3)),  # 12 bytes
        ("c", torch.zeros(1)),  # 4 bytes
    ]
    buckets = plan_buckets(tensors, 32)
    assert [[m.name for m in b.tensors] for b in buckets] == [["a"], ["big"], ["b", "c"]]
    assert [b.nbytes for b in buckets] == [8, 400, 20]  # "c" starts at the 16-byte boundary after "b"
    assert [m.offset for m in buckets[2].tensors] == [0, 16]


def test_bucket_fills_exactly_to_the_limit() -> None:
    tensors = [("a", torch.zeros(4)), ("b", torch.zeros(4)), ("c", torch.zeros(1))]  # 16 + 16 + 4, aligned
    buckets = plan_buckets(tensors, 32)
    assert [[m.name for m in b.tensors] for b in buckets] == [["a", "b"], ["c"]]


def test_plan_records_dtype_and_shape() -> None:
    (bucket,) = plan_buckets(_tensors(), 1 << 20)
    metas = {m.name: m for m in bucket.tensors}
    assert metas["layer.0.bf16"].dtype == "bfloat16"
    assert metas["layer.0.bf16"].shape == (3, 4)
    assert metas["layer.0.scale"].shape == ()
    assert metas["layer.0.empty"].shape == (0, 3)
    assert metas["layer.0.empty"].nbytes == 0
    assert metas["layer.0.steps"].dtype == "int64"


@pytest.mark.parametrize("bucket_bytes", [0, -1])
def test_non_positive_bucket_size(bucket_bytes: int) -> None:
    with pytest.raises(ValueError, match="bucket size must be positive"):
        plan_buckets(_tensors(), bucket_bytes)


def test_unsupported_dtype() -> None:
    with pytest.raises(ValueError, match="complex"):
        plan_buckets([("z", torch.zeros(2, dtype=torch.complex64))], 1024)


def test_plan_of_nothing() -> None:
    assert plan_buckets([], 1024) == []


# --------------------------------------------------------------------------------------------
# Pack / unpack
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket_bytes", [1, 24, 100, 1 << 20])
def test_round_trip_exact(bucket_bytes: int) -> None:
    tensors = _tensors()
    packed = pack_all(tensors, bucket_bytes)
    for index, buffer in packed:
        assert buffer.dtype == torch.uint8
        assert buffer.numel() == index.nbytes
    restored = _unpack_all(packed)
    assert [name for name, _ in restored] == [name for name, _ in tensors]
    for (name, original), (_, back) in zip(tensors, restored):
        assert back.dtype == original.dtype, name
        assert back.shape == original.shape, name
        assert torch.equal(back, original), name


@pytest.mark.parametrize(
    "tensor",
    [
        torch.tensor(1.0e-3, dtype=torch.float32),
        torch.tensor([float("inf"), -0.0, 1e-40], dtype=torch.float32),  # inf, signed zero, subnormal
        torch.linspace(-3, 3, 24, dtype=torch.bfloat16).reshape(2, 3, 4),
        torch.linspace(-3, 3, 10, dtype=torch.float16),
        torch.tensor([[2**62, -(2**62)], [0, -1]], dtype=torch.int64),
        torch.empty(0, dtype=torch.bfloat16),
        torch.empty(4, 0, 2, dtype=torch.float16),
        torch.tensor(7, dtype=torch.int64),
    ],
    ids=["f32-0d", "f32-special", "bf16-3d", "f16-1d", "i64-2d", "bf16-empty", "f16-empty-3d", "i64-0d"],
)
def test_round_trip_single_tensor_bitwise(tensor: torch.Tensor) -> None:
    (packed,) = pack_all([("w", tensor)], 1024)
    ((name, back),) = list(unpack_bucket(*packed))
    assert name == "w"
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    # bitwise, not numeric, equality (keeps -0.0 and NaN payloads)
    assert torch.equal(back.reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize(
    "first",
    [torch.tensor(1.0, dtype=torch.bfloat16), torch.tensor([True, False, True]), torch.zeros(3, dtype=torch.float16)],
    ids=["bf16-0d", "bool-3", "f16-3"],
)
def test_mixed_dtypes_with_unaligned_offsets_round_trip(first: torch.Tensor) -> None:
    tensors = [("first", first), ("weight", torch.arange(6, dtype=torch.float32).reshape(2, 3))]
    restored = _unpack_all(pack_all(tensors, 1 << 20))
    for (_, original), (_, back) in zip(tensors, restored):
        assert torch.equal(back, original)


def test_nan_round_trips_bitwise() -> None:
    tensor = torch.tensor([float("nan"), 1.0])
    (packed,) = pack_all([("w", tensor)], 64)
    ((_, back),) = list(unpack_bucket(*packed))
    assert torch.equal(back.view(torch.int32), tensor.view(torch.int32))


def test_non_contiguous_tensor_packs_its_values() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    transposed = base.t()
    assert not transposed.is_contiguous()
    (packed,) = pack_all([("t", transposed)], 1024)
    ((_, back),) = list(unpack_bucket(*packed))
    assert torch.equal(back, transposed)


def test_pack_bucket_uses_names_not_positions() -> None:
    tensors = _tensors()
    (index,) = plan_buckets(tensors, 1 << 20)
    shuffled = dict(reversed(tensors))
    restored = dict(unpack_bucket(index, pack_bucket(index, shuffled)))
    for name, original in tensors:
        assert torch.equal(restored[name], original)


def test_packing_into_a_reused_scratch_buffer_is_byte_identical() -> None:
    """The learner packs every bucket into one scratch buffer; padding left by the previous bucket
    (here 0xFF everywhere) must be rewritten, so each bucket equals a freshly packed one."""
    tensors = _tensors()
    plan = plan_buckets(tensors, 64)
    gaps = [m.offset - (prev.offset + prev.nbytes) for b in plan for prev, m in zip(b.tensors, b.tensors[1:])]
    assert len(plan) > 2 and any(g > 0 for g in gaps), "the test needs several buckets with padding"
    by_name = dict(tensors)
    scratch = torch.full((max(b.nbytes for b in plan),), 0xFF, dtype=torch.uint8)
    for index in plan:
        buffer = bucket_in(scratch, index)
        for meta in index.tensors:
            write_tensor(buffer, meta, by_name[meta.name])
        assert buffer.data_ptr() == scratch.data_ptr()  # a view: no new allocation
        assert torch.equal(buffer, pack_bucket(index, by_name)), [m.name for m in index.tensors]


def test_scratch_too_small_or_tensor_of_another_size_is_named() -> None:
    (index,) = plan_buckets([("w", torch.zeros(4))], 1024)
    with pytest.raises(ValueError, match="cannot hold a bucket of 16 bytes"):
        bucket_in(torch.zeros(15, dtype=torch.uint8), index)
    with pytest.raises(ValueError, match="tensor w has 20 bytes, its bucket index says 16"):
        write_tensor(torch.zeros(16, dtype=torch.uint8), index.tensors[0], torch.zeros(5))


def test_unpack_gives_views_into_the_buffer() -> None:
    (index, buffer) = pack_all([("a", torch.zeros(3))], 1024)[0]
    ((_, view),) = list(unpack_bucket(index, buffer))
    buffer.zero_()
    buffer[:4] = torch.tensor([1.0]).view(torch.uint8)
    assert view[0].item() == 1.0


@pytest.mark.parametrize(
    "make_buffer",
    [
        lambda n: torch.zeros(n + 1, dtype=torch.uint8),
        lambda n: torch.zeros(n - 1, dtype=torch.uint8),
        lambda n: torch.zeros(n, dtype=torch.int8),
        lambda n: torch.zeros(n // 4, dtype=torch.float32),
    ],
    ids=["one-byte-long", "one-byte-short", "int8", "float32"],
)
def test_unpack_rejects_mismatched_buffer(make_buffer) -> None:
    (index,) = plan_buckets([("a", torch.zeros(4)), ("b", torch.zeros(2))], 1024)
    with pytest.raises(ValueError, match="bucket buffer"):
        list(unpack_bucket(index, make_buffer(index.nbytes)))


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def test_checksum_equal_for_equal_weights() -> None:
    a, b = _tensors(seed=3), [(n, t.clone()) for n, t in _tensors(seed=3)]
    assert checksum(a) == checksum(b)
    assert len(checksum(a)) == 64
    assert checksum(_tensors(seed=3)) != checksum(_tensors(seed=4))


def test_checksum_equal_after_round_trip() -> None:
    tensors = _tensors()
    assert checksum(_unpack_all(pack_all(tensors, 40))) == checksum(tensors)


@pytest.mark.parametrize("position", [0, 2, 5, 8])
def test_checksum_changes_after_one_element_change(position: int) -> None:
    tensors = [(n, t.clone()) for n, t in _tensors()]
    before = checksum(tensors)
    name, tensor = tensors[position]
    flat = tensor.view(-1)
    flat[flat.numel() // 2] += 1
    assert checksum(tensors) != before, name


def test_checksum_changes_with_a_name() -> None:
    tensors = _tensors()
    renamed = [("renamed" if i == 0 else n, t) for i, (n, t) in enumerate(tensors)]
    assert checksum(renamed) != checksum(tensors)


def test_checksum_changes_with_dtype_or_shape_of_the_same_bytes() -> None:
    t = torch.arange(8, dtype=torch.float32)
    base = checksum([("w", t)])
    assert checksum([("w", t.view(torch.int32))]) != base  # same bytes, other dtype
    assert checksum([("w", t.reshape(2, 4))]) != base  # same bytes, other shape
    assert checksum([("w", t.reshape(2, 4))]) == checksum([("w", t.clone().reshape(2, 4))])


def test_checksum_is_order_independent() -> None:
    tensors = _tensors()
    assert checksum(tensors) == checksum(list(reversed(tensors)))
    assert checksum(tensors) == checksum(tensors[3:] + tensors[:3])
    assert checksum(iter(tensors)) == checksum(tensors)  # any iterable


def test_checksum_of_non_contiguous_equals_contiguous_copy() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    assert checksum([("t", t)]) == checksum([("t", t.contiguous())])
