"""Code that vLLM mixes into its worker class (`worker_extension_cls`) to receive new weights.

It runs inside vLLM's worker process, next to the model, and is reached through
`LLM.collective_rpc(method_name, args=...)`. Two transports:

- `load_weight_buckets`: buckets handed over by the rollout actor (Ray object store path, CPU or
  one node). With the in-process engine they arrive as tensors; with vLLM's multiprocess engine as
  bytes, since tensors do not pickle through `collective_rpc` there.
- `init_weight_group` + `receive_weight_buckets`: an NCCL group with the learner's rank 0, which
  broadcasts bucket after bucket (GPU clusters). This path cannot run in CI (no GPU); it follows
  the same pattern as vLLM's own RLHF examples and is kept small on purpose.

Both feed a lazy iterator of `(name, tensor)` into the worker's own `reload_weights`, vLLM's
in-place reload (it re-runs the kernel repacking that a plain `load_weights` misses on CPU), so only
one bucket needs to be materialised at a time. Going through the worker's method rather than
`self.model_runner.reload_weights` keeps the `set_current_vllm_config` context that vLLM's weight
loaders read (quantisation and parallel settings), exactly as vLLM's own reload path does.

Bucket indexes arrive in their plain wire form (`BucketIndex.to_wire()`) and are rebuilt here:
with the multiprocess engine, msgpack turns dataclasses into dicts on the way.
"""

from __future__ import annotations

import logging
import warnings
from typing import Iterator, Sequence

import torch

from empathy_rl.weight_buckets import BucketIndex, checksum, unpack_bucket

RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"


class RotaryReloadFilter(logging.Filter):
    """Drops vLLM's "RotaryEmbedding: Failed to load weights" at every reload, and nothing else.

    Why it is harmless: vLLM's layerwise reload counts every parameter *and buffer* of a layer as
    loadable. A rotary embedding's only tensor is its `cos_sin_cache` buffer, computed from the
    config (head size, rope theta) at start-up and never part of a checkpoint; so no weight reaches
    it, vLLM warns, and then puts the original cache back (`_place_kernel_tensors`). The cache is
    the same before and after a sync, which the weight-sync test checks through the log-prob gap
    (~1e-6) and identical greedy outputs. The same warning for any other layer would mean a real
    missing weight, so it still passes through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "%s: Failed to load weights" or not record.args:
            return True
        return not str(record.args[0]).endswith("RotaryEmbedding")


def install_log_filter() -> None:
    """Idempotent; runs at import, i.e. in whichever process hosts vLLM's worker."""
    logger = logging.getLogger(RELOAD_LOGGER)
    if not any(isinstance(f, RotaryReloadFilter) for f in logger.filters):
        logger.addFilter(RotaryReloadFilter())


install_log_filter()


def _as_uint8(buffer) -> torch.Tensor:
    """A uint8 view of a bucket (tensor, or bytes from the multiprocess engine), without a copy.

    The view is read-only, as the object-store views of the in-process engine are: the reload only
    copies out of it into the model's parameters.
    """
    if isinstance(buffer, torch.Tensor):
        return buffer
    if len(buffer) == 0:  # frombuffer rejects an empty buffer; an empty bucket has no tensors to view
        return torch.empty(0, dtype=torch.uint8)
    with warnings.catch_warnings():  # "buffer is not writable": nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(buffer, dtype=torch.uint8)


class WeightSyncExtension:
    """Mixed into vLLM's Worker: `self.reload_weights`, `self.device` and `self.rank` come from it."""

    def load_weight_buckets(self, buckets: Sequence[Sequence[object]], verify: bool = False) -> str | None:
        """Reload the model from `(wire index, buffer)` pairs; return a checksum of what arrived if `verify`."""
        received: list[tuple[str, torch.Tensor]] = []
        pairs = [(BucketIndex.from_wire(index), buffer) for index, buffer in buckets]

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            for index, buffer in pairs:
                for name, tensor in unpack_bucket(index, _as_uint8(buffer)):
                    if verify:
                        received.append((name, tensor))
                    yield name, tensor

        self.reload_weights(weights_iterator=weights())
        return checksum(received) if verify else None

    def init_weight_group(self, master_address: str, master_port: int, rank_offset: int, world_size: int) -> None:
        """Join the NCCL group in which the learner's rank 0 (group rank 0) broadcasts weights."""
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        group = StatelessProcessGroup.create(
            host=master_address, port=master_port, rank=rank_offset + self.rank, world_size=world_size
        )
        self._weight_comm = PyNcclCommunicator(group, device=self.device)

    def close_weight_group(self) -> None:
        """Drop the NCCL communicator (after a failed or timed-out sync, so a new group can form)."""
        comm = getattr(self, "_weight_comm", None)
        self._weight_comm = None
        if comm is not None and hasattr(comm, "destroy"):
            comm.destroy()

    def receive_weight_buckets(self, indexes: Sequence[object]) -> None:
        """Receive each bucket by broadcast from group rank 0 and reload the model from them."""
        comm = getattr(self, "_weight_comm", None)
        if comm is None:
            raise RuntimeError("receive_weight_buckets: no NCCL weight group (init_weight_group was not called or was torn down)")
        plan = [BucketIndex.from_wire(index) for index in indexes]

        def weights() -> Iterator[tuple[str, torch.Tensor]]:
            for index in plan:
                buffer = torch.empty(index.nbytes, dtype=torch.uint8, device=self.device)
                comm.broadcast(buffer, src=0, stream=torch.cuda.current_stream())
                torch.cuda.current_stream().synchronize()
                yield from unpack_bucket(index, buffer)

        self.reload_weights(weights_iterator=weights())
