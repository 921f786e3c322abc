"""Reward scoring throughput: Ray Serve (handle and HTTP, with and without batching) against the same
`RewardModel` in process, as ratios from one run.

    .venv/bin/python bench/reward_throughput.py                      # 128 candidates, 5 repeats
    .venv/bin/python bench/reward_throughput.py --items 512 --repeats 7 reward.chunk_size=16

The candidates are the bundled CoE SFT examples (`empathy_rl/assets/coe/seed_coe.jsonl`, Chinese
and English alternating), repeated up to `--items`. Each mode scores all of them `--repeats` times after one
warm-up pass; the table gives the median items/s, the spread (min-max) and the ratio to the
in-process median. Modes:

- in-process: `RewardModel.score` on batches of `chunk_size * max_batch_chunks` (what one batched
  Serve call scores), in this process, no Ray;
- handle / HTTP, batched: the driver's `RewardClient` (chunks of `reward.chunk_size`, sent together)
  against an app with `reward.max_batch_chunks=N`;
- handle / HTTP, unbatched: the same against an app with `reward.max_batch_chunks=1`.

Both apps run at once and every round measures every mode once, so a change in machine load
during the run hits all modes alike; the ratio column is the median over rounds of
(mode / in-process in the same round). Each replica gets `--replica-cpus` Ray CPUs (default: all
cores) so that it runs as many torch threads as this process.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(key, value)

TOKEN_VAR = "EMPATHY_RL_BENCH_REWARD_TOKEN"


def _items(n: int):
    """`n` candidates: the bundled CoE SFT examples, alternating Chinese and English, repeated as needed."""
    import itertools

    from empathy_rl.coe_data import accepted_records, bundled_path
    from reward.types import ScoreRequest

    bundled = accepted_records([bundled_path()])
    by_lang = [[r for r in bundled if r.language == lang] for lang in ("zh", "en")]
    records = [r for pair in itertools.zip_longest(*by_lang) for r in pair if r is not None]
    return [ScoreRequest(r.query, r.response(), r.crisis, r.language) for r in (records[i % len(records)] for i in range(n))]


def _rounds(modes: dict[str, Callable[[], int]], repeats: int) -> dict[str, list[float]]:
    """Items/s of each mode, measured round-robin so that drift in machine load hits every mode alike."""
    for run in modes.values():
        run()  # warm-up: first batches, connection pools, replica caches
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, run in modes.items():
            start = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - start))
    return rates


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=128, help="candidates scored per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per mode (after one warm-up)")
    parser.add_argument("--replica-cpus", type=float, default=float(os.cpu_count() or 1), help="Ray CPUs of the reward replica")
    parser.add_argument("overrides", nargs="*", help="reward config overrides, e.g. reward.chunk_size=16 reward.max_batch_chunks=8")
    args = parser.parse_args(argv)

    import dataclasses

    import ray
    import torch
    from ray import serve

    from empathy_rl.config import EmpathyRLConfig, ModelConfig, load_config
    from reward.model import RewardModel
    from reward.serve_app import RewardClient

    overrides = ["reward.answer_threshold=0.3", *args.overrides]
    cfg = load_config(None, overrides, base=EmpathyRLConfig(model=ModelConfig(path=""))).reward
    cfg = dataclasses.replace(cfg, num_cpus_per_replica=args.replica_cpus, require_token=True, auth_token_env=TOKEN_VAR)
    os.environ[TOKEN_VAR] = "bench-token"
    items = _items(args.items)
    merged = cfg.chunk_size * cfg.max_batch_chunks

    model = RewardModel(cfg)

    def in_process() -> int:
        for i in range(0, len(items), merged):
            model.score(items[i : i + merged])
        return len(items)

    port = _free_port()
    ray.init(num_cpus=2 * max(args.replica_cpus, 1.0), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    modes: dict[str, Callable[[], int]] = {"in-process": in_process}
    clients = []
    for batch_chunks in (cfg.max_batch_chunks, 1):  # both apps up at once, so every round measures every mode
        name = f"bench-reward-{batch_chunks}"
        owner = RewardClient(dataclasses.replace(cfg, app_name=name, max_batch_chunks=batch_chunks), http_port=port)
        url_client = RewardClient(dataclasses.replace(cfg, app_name=name, service="url", service_url=f"http://127.0.0.1:{port}/{name}"))
        clients += [url_client, owner]
        modes[f"Serve handle, max_batch_chunks={batch_chunks}"] = lambda c=owner: len(c.score(items)[0])
        modes[f"Serve HTTP, max_batch_chunks={batch_chunks}"] = lambda c=url_client: len(c.score(items)[0])
    rates = _rounds(modes, args.repeats)
    for c in clients:
        c.shutdown()
    serve.shutdown()
    ray.shutdown()

    load = os.getloadavg()
    print(f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min); "
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads in process), ray {ray.__version__}"
    )
    print(
        f"{args.items} candidates per pass, {args.repeats} rounds (each mode once per round, after one warm-up round); encoder {cfg.encoder}; "
        f"chunk_size {cfg.chunk_size}, in-process batches of {merged}; each replica with {args.replica_cpus:g} Ray CPUs\n"
    )
    print("| mode | items/s (median) | spread (min-max) | vs in-process, median of rounds | (min-max) |")
    print("| --- | --- | --- | --- | --- |")
    for mode, values in rates.items():
        ratios = [v / b for v, b in zip(values, rates["in-process"])]
        print(
            f"| {mode} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} | "
            f"{statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
        )


if __name__ == "__main__":
    main()
