"""Seconds per weight sync (learner -> vLLM rollout, object-store path) against the memory-copy bound.

    .venv/bin/python bench/weight_sync_bound.py                    # tiny model, 5 syncs
    .venv/bin/python bench/weight_sync_bound.py --size 100m --syncs 5 --write-docs

The real actors run on a local Ray cluster: a `LearnerGroup` (one DeepSpeed rank, policy only), a
`RolloutPool` (one in-process vLLM engine) and `WeightSync`, as the driver builds them. Each sync is
`WeightSync.push`: the learner packs its weights into buckets and puts each in the object store;
the rollout worker maps them and vLLM copies them into its parameters.

The bound is the payload (the model's bytes, `bytes`) divided by the memory-copy bandwidth of this
machine, measured in the same run (a 512 MiB float32 `Tensor.copy_`, median of 5): the time of
copying the weights once. The path copies them about three times (into the bucket buffer, into the
object store, into vLLM's parameters) plus the actor calls, so about 3x the bound is what this
design can reach. Actor calls per sync come from `WeightSync.last_push` (counted where the calls are
issued): one per learner rank and rollout worker, whatever the number of parameters or buckets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def memcpy_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes/s of one large float32 copy (torch, this process's threads)."""
    import torch

    src = torch.randn(mib * 2**18)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return src.numel() * 4 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="tiny | 50m | 100m")
    parser.add_argument("--syncs", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value), e.g. sync.bucket_size_mb=64")
    args = parser.parse_args()
    import ray

    from empathy_rl.config import load_config
    from empathy_rl.driver import init_ray
    from empathy_rl.placement import Placement
    from empathy_rl.weight_sync import WeightSync
    from learner.group import LearnerGroup
    from rollout.pool import RolloutPool

    load_start = _common.print_load("start")
    model = _common.model_path(args.size)
    cfg = load_config(
        "configs/tiny-cpu.yaml",
        [f"model.path={model}", "warmstart.run_sft=false", "trainer.run_name=bench-sync", "algorithm.kl_beta=0", *args.overrides],
    )
    bandwidth = [memcpy_bandwidth()]
    init_ray(cfg)
    placement = learner = pool = None
    try:
        placement = Placement(cfg)
        learner = LearnerGroup(cfg, placement)
        learner.load_policy(str(model), cfg.learner.lr, 0, with_reference=False)
        pool = RolloutPool(cfg, str(model), placement)
        sync = WeightSync(cfg, learner, pool)
        plan = ray.get(learner.bucket_plan_ref(), timeout=cfg.timeouts.startup_s)
        payload = sum(index.nbytes for index in plan)
        sync.push(1)  # warm-up: first puts, first reload
        seconds, calls, buckets, export, reload = [], [], [], [], []
        for version in range(2, 2 + args.syncs):
            start = time.perf_counter()
            sync.push(version)
            seconds.append(time.perf_counter() - start)
            calls.append(sync.last_push["calls"])
            buckets.append(sync.last_push["buckets"])
            export.append(sync.last_push["export_s"])
            reload.append(sync.last_push["reload_s"])
            bandwidth.append(memcpy_bandwidth(repeats=3))  # interleaved, so load drift hits both
    finally:
        for stop in (pool and pool.shutdown, learner and learner.shutdown, placement and placement.remove):
            if stop:
                stop()
        ray.shutdown()
    load_end = _common.print_load("end")
    bw = statistics.median(bandwidth)
    bound = payload / bw
    ratios = [s / bound for s in seconds]
    params = _common.parameter_count(model)
    note = (
        f"Model {args.size} ({params / 1e6:.2f}M parameters, payload {payload / 2**20:.1f} MiB in {int(statistics.median(buckets))} bucket(s) "
        f"of sync.bucket_size_mb={cfg.sync.bucket_size_mb}); memcpy bandwidth {bw / 2**30:.2f} GiB/s "
        f"({_common.spread([b / 2**30 for b in bandwidth], '{:.2f}')} GiB/s over the run); bound = payload / bandwidth = {bound * 1e3:.1f} ms."
    )
    lines = [
        f"| what | median (min-max, n={args.syncs}) |",
        "| --- | --- |",
        f"| seconds per sync | {_common.spread(seconds)} |",
        f"| of which learner export (pack + put) | {_common.spread(export)} |",
        f"| of which rollout reload | {_common.spread(reload)} |",
        f"| sync / bound | {_common.spread(ratios, '{:.1f}')} |",
        f"| actor calls per sync | {_common.spread(calls, '{:.0f}')} |",
        f"| buckets per sync | {_common.spread(buckets, '{:.0f}')} |",
    ]
    table = "\n".join(lines)
    _common.publish(__file__, f"weight_sync_{args.size}", note, table, load_start, load_end, args.write_docs)


if __name__ == "__main__":
    main()
