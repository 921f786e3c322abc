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

Replay of a GRPO run's steps (in process, no Ray), for the query cache and the encoder batch size:

    .venv/bin/python bench/reward_throughput.py --replay runs/demo --repeats 5

scores the run's step batches in order (`prompts.jsonl` names each step's records; queries come
from the prepared `train.parquet` of the run's config, `group_size` candidates each, whose
responses are the run's `samples.jsonl` outputs in that language) with the run's reward config
under three variants: cache off with batches of 64 texts, cache off with 16, and cache on with 16.
Each repeat builds fresh models (a cold cache) and scores every step under every variant in turn;
the table gives, per variant, the median over repeats of the median step's wall and CPU time of
this process (CPU time is less sensitive to other load on a shared machine). `--threads` (default
1) sets torch threads: a reward replica with fewer than 2 Ray CPUs runs on one (Ray sets
OMP_NUM_THREADS from its CPUs).
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


REPLAY_VARIANTS = {
    "cache off, encoder batches of 64": ["reward.query_cache_size=0", "reward.encoder_batch_size=64"],
    "cache off, encoder batches of 16": ["reward.query_cache_size=0", "reward.encoder_batch_size=16"],
    "cache on (4096), encoder batches of 16": ["reward.query_cache_size=4096", "reward.encoder_batch_size=16"],
}


def _replay_batches(run_dir: Path, group_size: int, prepared: Path):
    """The run's step batches: each step's records (prompts.jsonl) as `group_size` candidates, with
    queries from `prepared` and responses taken in turn from the run's samples in the same language."""
    import json

    import pandas as pd

    from reward.types import ScoreRequest

    records = pd.read_parquet(prepared).set_index("id")
    pools: dict[str, list[str]] = {}
    with open(run_dir / "samples.jsonl", encoding="utf-8") as f:
        for line in f:
            sample = json.loads(line)
            pools.setdefault(sample["language"], []).append(sample["response"])
    batches, turn = [], 0
    with open(run_dir / "prompts.jsonl", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            batch = []
            for record_id in json.loads(line)["record_ids"]:
                if record_id not in records.index:
                    raise SystemExit(f"{run_dir / 'prompts.jsonl'}:{number}: record {record_id} is not in {prepared}")
                r = records.loc[record_id]
                pool = pools.get(r.language)
                if not pool:
                    raise SystemExit(f"{run_dir / 'samples.jsonl'}: no {r.language} sample to use as a response")
                for _ in range(group_size):
                    batch.append(ScoreRequest(r.query, pool[turn % len(pool)], bool(r.crisis), r.language))
                    turn += 1
            batches.append(batch)
    return batches


def replay(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """`--replay RUN_DIR`: the run's step batches under each of `REPLAY_VARIANTS`, in process."""
    import torch

    from empathy_rl.config import load_config
    from reward.model import RewardModel

    torch.set_num_threads(args.threads)
    run_dir = Path(args.replay)
    run_cfg = load_config(str(run_dir / "config.yaml"), args.overrides)
    batches = _replay_batches(run_dir, run_cfg.rollout.group_size, Path(run_cfg.data.prepared_dir) / "train.parquet")
    configs = {name: load_config(str(run_dir / "config.yaml"), [*args.overrides, *extra]).reward for name, extra in REPLAY_VARIANTS.items()}
    start_load = os.getloadavg()
    wall: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    later: dict[str, list[float]] = {name: [] for name in configs}
    distinct = len({item.query for batch in batches for item in batch})
    prompts_per_step = max(len(batches[0]) // run_cfg.rollout.group_size, 1)
    first_epoch = -(-distinct // prompts_per_step)  # steps until every prompt was seen once (ceil)
    for _ in range(args.repeats):
        models = {name: RewardModel(cfg) for name, cfg in configs.items()}
        steps: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        for batch in batches:
            for name, model in models.items():
                w, c = time.perf_counter(), time.process_time()
                model.score(batch)
                steps[name].append((time.perf_counter() - w, time.process_time() - c))
        for name, values in steps.items():
            wall[name].append(statistics.median(v[0] for v in values))
            cpu[name].append(statistics.median(v[1] for v in values))
            later[name].append(statistics.median(v[1] for v in values[first_epoch:]) if len(values) > first_epoch else float("nan"))
    load = os.getloadavg()
    print(f"command: {' '.join([Path(sys.argv[0]).name, *argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {start_load[0]:.1f}/{start_load[1]:.1f}/{start_load[2]:.1f} at start, "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at end (1/5/15 min); python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    print(
        f"{len(batches)} steps of {len(batches[0])} candidates ({distinct} distinct queries, about {first_epoch} steps an epoch) "
        f"from {run_dir}; encoder {configs[next(iter(configs))].encoder}; {args.repeats} repeats, each with cold caches\n"
    )
    print("| variant | step wall s (median) | (min-max over repeats) | step CPU s (median) | (min-max) | CPU s after the first epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in configs:
        print(
            f"| {name} | {statistics.median(wall[name]):.3f} | {min(wall[name]):.3f}-{max(wall[name]):.3f} | "
            f"{statistics.median(cpu[name]):.3f} | {min(cpu[name]):.3f}-{max(cpu[name]):.3f} | {statistics.median(later[name]):.3f} |"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=128, help="candidates scored per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per mode (after one warm-up)")
    parser.add_argument("--replica-cpus", type=float, default=float(os.cpu_count() or 1), help="Ray CPUs of the reward replica")
    parser.add_argument("--replay", default=None, help="a GRPO run directory: replay its step batches in process (see above) instead of the Serve comparison")
    parser.add_argument("--threads", type=int, default=1, help="--replay: torch threads of this process")
    parser.add_argument("overrides", nargs="*", help="reward config overrides, e.g. reward.chunk_size=16 reward.max_batch_chunks=8")
    args = parser.parse_args(argv)
    if args.replay:
        replay(args, argv if argv is not None else sys.argv[1:])
        return

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
