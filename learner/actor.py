"""`LearnerWorker`: one data-parallel rank of the policy, as a Ray actor.

It holds a DeepSpeed engine for the policy (ZeRO stage from config; gloo on CPU, NCCL on GPU) and
a frozen reference model for the KL term (the SFT starting point, as in the paper; with LoRA the
reference is the same network with its adapters switched off, which costs no extra memory). Without
LoRA the reference is sharded with a second, optimizer-less ZeRO-3 engine (`learner.ref_zero_stage`,
optionally offloaded to CPU with `learner.ref_offload`), so no rank holds a whole copy of it.

A GRPO step: compute reference log-probs (and old log-probs when one batch is used for more than
one optimizer step; with a single on-policy step they equal the current log-probs, detached),
then for each mini-batch accumulate `empathy_rl.grpo.policy_loss` over micro-batches and step.
Losses are weighted by each micro-batch's share of the mini-batch's tokens (or sequences) summed
over all ranks, so gradient accumulation and data parallelism give exactly the loss of the
configured aggregation over the whole mini-batch. Micro-batches are sorted by length and trimmed,
and entropy is computed only when it is in the loss or logged (`learner.microbatch`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

from empathy_rl.config import EmpathyRLConfig
from empathy_rl.weight_buckets import BucketIndex, bucket_in, checksum, plan_buckets, write_tensor
from learner.batch import TrainBatch
from learner.ds_config import build_ds_config, build_reference_ds_config, reference_zero_stage
from learner.microbatch import (
    entropy_mode,
    forward_logprobs,
    mini_batch_denominator,
    plan_micro_batches,
    run_micro_batches,
    sequence_lengths,
)
from learner.weights import iter_full_weights

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def learner_env(cfg: EmpathyRLConfig) -> dict[str, str]:
    """Environment a learner actor needs before DeepSpeed is imported."""
    env = {"DS_ACCELERATOR": "cpu" if cfg.cluster.device == "cpu" else "cuda", "TOKENIZERS_PARALLELISM": "false"}
    for key in ("TORCH_EXTENSIONS_DIR",):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


class LearnerWorker:
    def __init__(self, cfg: EmpathyRLConfig, rank: int, world_size: int):
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.engine = None
        self.ref_model = None
        self.ref_engine = None  # the ZeRO-3 inference engine owning `ref_model` when the reference is sharded
        self._weight_comm = None
        self.updates = 0  # optimizer steps in the current phase
        self.train_steps = 0  # GRPO train_step calls (the clock of algorithm.entropy_log_every)
        self.entropy_passes = 0  # micro-batches whose full-vocabulary entropy was computed
        if cfg.cluster.device == "cpu":
            torch.set_num_threads(learner_threads(cfg))
        logging.getLogger("DeepSpeed").setLevel(cfg.logging.actor_log_level)
        logging.getLogger("transformers").setLevel(cfg.logging.actor_log_level)
        torch.manual_seed(cfg.trainer.seed + rank)

    # ------------------------------------------------------------------ set-up
    def address(self) -> tuple[str, int]:
        """This actor's node IP and a free port, for the rank-0 rendezvous."""
        import ray

        return ray.util.get_node_ip_address(), _bindable_port(self.cfg.learner.master_port)

    def init_distributed(self, master_addr: str, master_port: int) -> None:
        os.environ.update(
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
            RANK=str(self.rank),
            LOCAL_RANK="0" if self.cfg.cluster.device == "cpu" else str(self.rank % max(torch.cuda.device_count(), 1)),
            WORLD_SIZE=str(self.world_size),
        )
        import deepspeed

        deepspeed.init_distributed(dist_backend=self.cfg.learner.backend)
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.cfg.cluster.device == "cuda" else torch.device("cpu")

    def load_policy(self, model_path: str, lr: float, warmup_steps: int, with_reference: bool) -> int:
        """(Re)build the engine from a Hugging Face checkpoint; returns the number of parameters.

        Called once per GRPO run (from the starting policy, usually the SFT output, which then also
        becomes the reference), and again when a dead learner is rebuilt.
        """
        import deepspeed
        from transformers import AutoModelForCausalLM

        cfg = self.cfg
        self.engine = self.ref_model = self.ref_engine = None
        self.model_path = model_path
        dtype = _DTYPES[cfg.model.dtype]
        ds_config = build_ds_config(cfg)
        keep_alive = None
        if cfg.learner.zero_stage == 3:  # partition while loading instead of materialising 8B per rank
            from transformers.integrations import HfDeepSpeedConfig

            keep_alive = HfDeepSpeedConfig(ds_config)  # noqa: F841  (must outlive from_pretrained)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
        del keep_alive
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        lora = cfg.model.lora
        if lora.enabled:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules), task_type="CAUSAL_LM"),
            )
        if with_reference and cfg.algorithm.kl_beta > 0 and not lora.enabled:
            self._load_reference(model_path, dtype)
        self.use_lora_reference = with_reference and cfg.algorithm.kl_beta > 0 and lora.enabled

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = None
        if not cfg.learner.offload_optimizer:
            optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.learner.betas), weight_decay=cfg.learner.weight_decay)
        else:
            ds_config["optimizer"]["params"]["lr"] = lr
        scheduler = None
        if optimizer is not None:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
        )
        self.updates = 0
        self._bucket_plan: Optional[list[BucketIndex]] = None
        self._pack_scratch: Optional[torch.Tensor] = None  # rank 0's CPU packing buffer, kept across syncs
        return sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters())

    def _load_reference(self, model_path: str, dtype: torch.dtype) -> None:
        """The frozen KL reference: a full copy (`ref_zero_stage` 0) or sharded by ZeRO-3 inference.

        At stage 3 a `HfDeepSpeedConfig` of the reference's own config is alive during
        `from_pretrained`, so the weights are partitioned while loading (the policy's config object
        is gone by then, and without one transformers would materialise the whole model per rank).
        """
        from transformers import AutoModelForCausalLM

        cfg = self.cfg
        if reference_zero_stage(cfg) != 3:
            ref = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
            self.ref_model = ref.to(self.device).eval().requires_grad_(False)
            return
        import deepspeed
        from transformers.integrations import HfDeepSpeedConfig

        ds_config = build_reference_ds_config(cfg)
        keep_alive = HfDeepSpeedConfig(ds_config)  # noqa: F841  (must outlive from_pretrained)
        ref = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
        ref.eval().requires_grad_(False)
        self.ref_engine, *_ = deepspeed.initialize(model=ref, config=ds_config)
        del keep_alive
        self.ref_engine.eval()
        self.ref_model = self.ref_engine.module

    # ------------------------------------------------------------------ log-probs
    @torch.no_grad()
    def _logprobs_nograd(self, batch: TrainBatch, reference: bool) -> torch.Tensor:
        """Log-probs of the whole batch without gradient, in length-sorted micro-batches: (B, T-1) on CPU.

        Batched at `nograd_micro_batch_size` (`learner.ref_micro_batch_size`).
        """
        temperature = self.cfg.rollout.temperature
        out = torch.zeros(batch.loss_mask.shape, dtype=torch.float32)
        micro = nograd_micro_batch_size(self.cfg, len(batch))
        for rows in plan_micro_batches(sequence_lengths(batch), range(len(batch)), micro):
            part = batch.select(rows)
            if reference and self.use_lora_reference:
                with self.engine.module.disable_adapter():
                    logp, _ = forward_logprobs(self.engine.module, part, temperature, self.device)
            else:
                module = (self.ref_engine or self.ref_model) if reference else self.engine.module
                logp, _ = forward_logprobs(module, part, temperature, self.device)
            out[rows, : logp.shape[1]] = logp.float().cpu()
        return out

    def compute_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Current policy log-probs (B, T-1), for evaluation and the weight-sync check."""
        self.engine.module.eval()
        return self._logprobs_nograd(batch, reference=False)

    # ------------------------------------------------------------------ updates
    def _global_count(self, value: float) -> float:
        import torch.distributed as dist

        t = torch.tensor([float(value)], device=self.device)
        if self.world_size > 1:
            dist.all_reduce(t)
        return float(t.item())

    def _set_accumulation(self, micro_batches: int) -> None:
        target = self.cfg.learner.micro_batch_size * micro_batches * self.world_size
        if self.engine.train_batch_size() != target:
            self.engine.set_train_batch_size(target)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """One GRPO update on this rank's shard of the step's candidates."""
        cfg, alg = self.cfg, self.cfg.algorithm
        start = time.perf_counter()
        self.train_steps += 1
        self.engine.module.train()
        # Old log-probs recomputed with the current weights: needed when one batch gets several updates, and
        # in async mode, where the batch came from the previous version and the ratio is taken against ours.
        need_old = cfg.learner.ppo_epochs * cfg.learner.mini_batches_per_step > 1 or cfg.trainer.mode == "async"
        old_all = self._logprobs_nograd(batch, reference=False) if need_old else None
        t_ref = time.perf_counter()
        ref_all = self._logprobs_nograd(batch, reference=True) if alg.kl_beta > 0 else None
        t_ref = time.perf_counter() - t_ref
        entropy = entropy_mode(alg.entropy_coeff, alg.entropy_log_every, self.train_steps)
        sums: dict[str, float] = {}
        grad_norms: list[float] = []
        lengths = sequence_lengths(batch)
        minis = _even_slices(len(batch), cfg.learner.mini_batches_per_step)

        def step_engine(last: bool) -> None:
            if last and cfg.learner.zero_stage == 0:
                grad_norms.append(_grad_norm(self.engine.module))  # DeepSpeed reports none at stage 0
            self.engine.step()

        for _ in range(cfg.learner.ppo_epochs):
            for mini in minis:
                # Same rows per optimizer step as before; inside the mini-batch, longest rows first.
                chunks = plan_micro_batches(lengths, range(mini.start, mini.stop), cfg.learner.micro_batch_size)
                self._set_accumulation(len(chunks))
                denom = self._global_count(mini_batch_denominator(batch.select(mini), alg.aggregation))
                part_sums = run_micro_batches(
                    self.engine, batch, chunks, alg=alg, temperature=cfg.rollout.temperature, device=self.device,
                    denom=denom, world_size=self.world_size, entropy=entropy, old_all=old_all, ref_all=ref_all,
                    backward=lambda loss: self.engine.backward(loss, scale_wrt_gas=False), after_backward=step_engine,
                )
                for key, value in part_sums.items():
                    sums[key] = sums.get(key, 0.0) + value
                norm = self.engine.get_global_grad_norm() if self.cfg.learner.zero_stage > 0 else None
                if norm is not None:
                    grad_norms.append(float(norm))
                self.updates += 1
        tokens_seen = sums.pop("tokens", 0.0)
        self.entropy_passes += int(sums.pop("entropy_passes", 0.0))
        sums.pop("weighted_loss", None)
        out = {f"train/{k}": v / max(tokens_seen, 1.0) for k, v in sums.items()}
        out["train/grad_norm"] = sum(grad_norms) / len(grad_norms) if grad_norms else float("nan")
        out["train/lr"] = float(self.engine.get_lr()[0])
        out["train/tokens"] = tokens_seen / cfg.learner.ppo_epochs
        out["time/train_ref_s"] = t_ref
        out["time/train_s"] = time.perf_counter() - start
        return out

    # ------------------------------------------------------------------ weights out
    def _named_weights(self):
        return iter_full_weights(self.engine.module, self.cfg.learner.zero_stage)

    def bucket_plan(self) -> list[BucketIndex]:
        if self._bucket_plan is None:
            self._bucket_plan = plan_buckets(self._named_weights(), self.cfg.sync.bucket_size_mb * 2**20)
        return self._bucket_plan

    def _bucket_buffer(self, index: BucketIndex, device: torch.device | str) -> torch.Tensor:
        """Where rank 0 packs `index`: on CPU a view of one scratch buffer the size of the largest
        bucket, kept across buckets and syncs (a fresh buffer per bucket cost more than the copy into
        it); on a GPU a fresh buffer, so that no GPU memory is held between syncs."""
        if str(device) != "cpu":
            return torch.zeros(index.nbytes, dtype=torch.uint8, device=device)
        largest = max(i.nbytes for i in self.bucket_plan())
        if self._pack_scratch is None or self._pack_scratch.numel() != largest:
            self._pack_scratch = torch.zeros(largest, dtype=torch.uint8)
        return bucket_in(self._pack_scratch, index)

    def iter_buckets(self, device: torch.device | str = "cpu") -> Iterator[tuple[BucketIndex, Optional[torch.Tensor]]]:
        """Packed buckets in plan order, built one at a time: `(index, buffer)` on rank 0, `(index, None)` elsewhere.

        Every rank must drain this at ZeRO-3 (gathering one module's parameters is collective), but
        only rank 0 copies, each tensor straight into its bucket while it is gathered: no tensor is
        kept, never the whole state dict. On CPU the buffer is a view of one scratch buffer that the
        next bucket overwrites: use it (`ray.put` copies it) or clone it before asking for the next.
        """
        plan = self.bucket_plan()
        named = self._named_weights()
        for index in plan:
            buffer = self._bucket_buffer(index, device) if self.rank == 0 else None
            for meta in index.tensors:
                name, tensor = next(named)
                if name != meta.name:
                    raise RuntimeError(f"weight export: got {name} where the bucket plan has {meta.name} (the model changed since the plan)")
                if buffer is not None:
                    write_tensor(buffer, meta, tensor)
            yield index, buffer
        for _ in named:  # drain (a module with no parameters in the plan still takes part in gathering)
            pass

    def export_to_object_store(self) -> list[tuple[dict, object]]:
        """Rank 0: pack the full weights bucket by bucket and `ray.put` each once (CPU / one-node path).

        Returns `(wire index, ObjectRef)` pairs (`BucketIndex.to_wire()`: plain data that survives any
        serializer). Every rank must call this at ZeRO-3; only rank 0 puts objects. `ray.put` of the
        numpy view copies the bucket into the object store once (no pickling copy), which is what
        lets the next bucket reuse the packing buffer.
        """
        import ray

        refs = []
        for index, buffer in self.iter_buckets("cpu"):
            if buffer is not None:
                refs.append((index.to_wire(), ray.put(buffer.numpy())))
        return refs

    def weights_checksum(self) -> str:
        return checksum((n, t.to("cpu")) for n, t in self._named_weights())

    def weight_group_address(self) -> tuple[str, int]:
        """Node IP and port of the NCCL weight group: `sync.nccl_port`, or a fresh free port.

        Never the DeepSpeed master port, which rank 0's TCPStore already holds.
        """
        import ray

        return ray.util.get_node_ip_address(), self.cfg.sync.nccl_port or _bindable_port(0)

    def init_weight_group(self, master_address: str, master_port: int, world_size: int) -> None:
        """Rank 0 joins the NCCL weight group as group rank 0 (GPU path)."""
        if self.rank != 0:
            return
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        group = StatelessProcessGroup.create(host=master_address, port=master_port, rank=0, world_size=world_size)
        self._weight_comm = PyNcclCommunicator(group, device=self.device)

    def close_weight_group(self) -> None:
        """Drop the NCCL communicator after a failed sync, so that a new group can be formed."""
        comm, self._weight_comm = self._weight_comm, None
        if comm is not None and hasattr(comm, "destroy"):
            comm.destroy()

    def broadcast_weights_nccl(self) -> None:
        """Rank 0 broadcasts one buffer per bucket; rollout workers receive in the same order."""
        if self.rank == 0 and self._weight_comm is None:
            raise RuntimeError("broadcast_weights_nccl: no NCCL weight group (init_weight_group was not called or was torn down)")
        for _, buffer in self.iter_buckets(self.device):
            if buffer is not None:
                self._weight_comm.broadcast(buffer, src=0, stream=torch.cuda.current_stream())
                torch.cuda.current_stream().synchronize()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, directory: str, save_optimizer: bool) -> None:
        """Policy in Hugging Face format (full weights, LoRA merged) plus, optionally, DeepSpeed state.

        All ranks must call this (ZeRO-3 gathering and the DeepSpeed save are collective); rank 0
        writes `policy/` (safetensors shards, config, generation config, tokenizer), loadable by
        `AutoModelForCausalLM`, vLLM, or `model.path` of a later run.
        """
        import shutil

        out = Path(directory)
        tied = bool(getattr(self.engine.module.config, "tie_word_embeddings", False))
        # A tied LM head is the embedding: Hugging Face re-ties it on load, and safetensors refuses
        # to write two names for one storage.
        # Only rank 0 keeps the full state dict; the others take part in ZeRO-3 gathering and drop it.
        state = {}
        for n, t in self._named_weights():
            if self.rank == 0 and not (tied and n == "lm_head.weight"):
                state[n] = t.to("cpu").clone()
        if save_optimizer:
            self.engine.save_checkpoint(str(out / "deepspeed"), tag="engine")
        from empathy_rl.checkpointing import save_rng

        save_rng(out / "rng" / f"rank-{self.rank}.pt")  # every rank: exact resume restores each rank's generators
        if self.rank != 0:
            return
        from huggingface_hub import save_torch_state_dict
        from transformers import AutoTokenizer

        policy = out / "policy"
        policy.mkdir(parents=True, exist_ok=True)
        save_torch_state_dict(state, policy, max_shard_size="5GB")
        for name in ("config.json", "generation_config.json"):
            if (Path(self.model_path) / name).exists():
                shutil.copy(Path(self.model_path) / name, policy / name)
        AutoTokenizer.from_pretrained(self.cfg.model.tokenizer_path or self.model_path).save_pretrained(policy)

    def load_checkpoint(self, directory: str) -> int:
        """Resume: DeepSpeed module, optimizer and scheduler state plus this rank's RNG; returns the optimizer steps.

        Called on every rank after `load_policy` built the engine (and the KL reference from the run's
        starting policy); the module weights come from the checkpoint, not from that policy.
        """
        from empathy_rl.checkpointing import load_rng

        out = Path(directory)
        if not (out / "deepspeed").is_dir():
            raise FileNotFoundError(f"{out}: no deepspeed/ state to resume from (the run had checkpoint.save_optimizer=false)")
        path, _ = self.engine.load_checkpoint(str(out / "deepspeed"), tag="engine", load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"{out / 'deepspeed'}: DeepSpeed found no checkpoint with tag 'engine'")
        rng = out / "rng" / f"rank-{self.rank}.pt"
        if rng.is_file():  # a resume with more learner ranks than the checkpoint had: new ranks keep their seeds
            load_rng(rng)
        self._bucket_plan = self._pack_scratch = None
        return int(self.engine.global_steps)


def learner_threads(cfg: EmpathyRLConfig) -> int:
    """Torch intra-op threads on CPU: `learner.torch_threads`, or (0) the CPUs the actor owns.

    Ray gives an actor `learner.num_cpus_per_worker` CPUs; more threads than that oversubscribe the
    cores shared with the rollout and reward actors, fewer leave owned cores idle.
    """
    lc = cfg.learner
    return lc.torch_threads if lc.torch_threads > 0 else max(1, int(lc.num_cpus_per_worker))


def nograd_micro_batch_size(cfg: EmpathyRLConfig, batch_rows: int) -> int:
    """Rows per no-grad forward (KL reference, old log-probs): `learner.ref_micro_batch_size`, or
    (0) `learner.micro_batch_size`, never more than the batch.

    No activations are kept for a backward pass, so on a GPU far larger batches fit and fill the
    device better. On CPU larger is not faster: with rows sorted by length, 64 tiny-model rows took
    0.58 s as one batch, 0.36 s as 4 x 16 and 0.30 s as 8 x 8 (padding grows with the batch;
    docs/benchmarks.md), hence the default.
    """
    size = cfg.learner.ref_micro_batch_size or cfg.learner.micro_batch_size
    return max(1, min(size, batch_rows))


def _bindable_port(port: int) -> int:
    """`port` after checking it can be bound on this node (an error if it is taken); 0 = a free one."""
    import socket

    with socket.socket() as s:
        s.bind(("", port))
        return s.getsockname()[1]


def _grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad.float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def _even_slices(n: int, parts: int) -> list[slice]:
    size = math.ceil(n / parts)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
