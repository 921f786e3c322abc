"""`python -m cluster.submit`: validate a GRPO config locally, then run it as a Ray job on a cluster.

    python -m cluster.submit --address http://HEAD:8265 --config configs/qwen3-8b.yaml [key=value ...] [--no-wait]

The config is merged and validated on your machine before anything touches the network, so a typo
in an override fails in a second instead of after the cluster has loaded an 8B model. The job's
driver always joins the cluster it runs on (`cluster.address=auto` is forced). Without --no-wait the
job's logs are streamed here and the exit status is 0 only if the job succeeded.

Exit status: 0 succeeded (or submitted, with --no-wait), 1 failed, stopped or cluster unreachable,
2 invalid config, 130 interrupted (the job keeps running on the cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cluster.runtime_env import build_runtime_env, is_excluded
from empathy_rl.config import ConfigError, EmpathyRLConfig, load_config

if TYPE_CHECKING:
    from ray.job_submission import JobStatus, JobSubmissionClient

REPO_ROOT = Path(__file__).resolve().parents[1]
FORCED_ADDRESS = "cluster.address=auto"


def job_overrides(overrides: Sequence[str]) -> list[str]:
    """The user's overrides with `cluster.address=auto` last: inside a Ray job the driver must join
    the cluster it was submitted to, never start a private one on the head node."""
    return [o for o in overrides if not o.startswith("cluster.address=")] + [FORCED_ADDRESS]


def build_entrypoint(config_path: str, overrides: Sequence[str]) -> str:
    """The shell command Ray runs on the head node, every argument quoted (values may hold spaces)."""
    return shlex.join(["empathy-rl", "grpo", "--config", config_path, *job_overrides(overrides)])


def config_in_working_dir(config: str, working_dir: Path) -> str:
    """`config` relative to `working_dir`: the job runs inside Ray's copy of it, so that is the only
    path that exists on the cluster."""
    path = Path(config).resolve()
    try:
        relative = path.relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"--config {config} is outside {working_dir}, the directory uploaded to the cluster") from None
    if is_excluded(relative):
        raise ConfigError(f"--config {config} is in a directory that is not uploaded; move it under configs/")
    return relative


def validate_job(config_path: str | Path, overrides: Sequence[str]) -> EmpathyRLConfig:
    """Merge and validate exactly what the cluster will run; raises ConfigError. No network."""
    return load_config(config_path, job_overrides(overrides))


def gpus_requested(cfg: EmpathyRLConfig) -> dict[str, float]:
    """GPUs each part of the run asks Ray for. Ray cannot give a GPU that holds a fractional
    reservation (the reward replicas) to a whole-GPU request, so the total must fit with that in mind."""
    r = cfg.rollout
    per_engine = r.tensor_parallel_size if r.tensor_parallel_size > 1 else r.num_gpus_per_worker  # TP>1: vLLM reserves them
    return {
        "learner": cfg.learner.num_workers * cfg.learner.num_gpus_per_worker,
        "rollout": r.num_workers * per_engine,
        "reward": cfg.reward.num_replicas * cfg.reward.num_gpus_per_replica,
    }


def cpus_requested(cfg: EmpathyRLConfig) -> dict[str, float]:
    """Ray CPUs each part of the run reserves (the driver and the Serve controller reserve none)."""
    return {
        "learner": cfg.learner.num_workers * cfg.learner.num_cpus_per_worker,
        "rollout": cfg.rollout.num_workers * cfg.rollout.num_cpus_per_worker,
        "reward": cfg.reward.num_replicas * cfg.reward.num_cpus_per_replica,
    }


async def _stream_logs(client: JobSubmissionClient, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def follow(client: JobSubmissionClient, job_id: str, poll_s: float = 2.0) -> JobStatus:
    """Stream the job's logs until the stream closes, then wait for a terminal status."""
    asyncio.run(_stream_logs(client, job_id))
    status = client.get_job_status(job_id)
    while not status.is_terminal():  # the stream can close a moment before the status flips
        time.sleep(poll_s)
        status = client.get_job_status(job_id)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cluster.submit", description="Submit an empathy-rl GRPO run as a Ray job.")
    parser.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HEAD:8265")
    parser.add_argument("--config", "-c", required=True, help="YAML preset inside the repo, e.g. configs/qwen3-8b.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rollout.num_workers=8")
    parser.add_argument("--no-wait", action="store_true", help="submit and return without streaming logs")
    parser.add_argument("--submission-id", help="job id (default: empathy-rl-grpo-<timestamp>)")
    parser.add_argument("--working-dir", type=Path, default=REPO_ROOT, help="directory uploaded as the job's code (default: this repo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_in_working_dir(args.config, args.working_dir)
        cfg = validate_job(args.working_dir / config, args.overrides)
        runtime_env = build_runtime_env(cfg, str(args.working_dir.resolve()))
    except ValueError as err:  # ConfigError is a ValueError
        print(f"cluster.submit: config error: {err}", file=sys.stderr)
        return 2
    gpus = gpus_requested(cfg)
    cpus = cpus_requested(cfg)
    print("GPUs requested: " + " + ".join(f"{v:g} {k}" for k, v in gpus.items()) + f" = {sum(gpus.values()):g}")
    print("CPUs requested: " + " + ".join(f"{v:g} {k}" for k, v in cpus.items()) + f" = {sum(cpus.values()):g}")

    from ray.job_submission import JobStatus, JobSubmissionClient  # imported late: validation needs no Ray

    try:
        client = JobSubmissionClient(args.address)
    except ConnectionError as err:  # wrong address, or the dashboard is not reachable/forwarded
        print(f"cluster.submit: {err}", file=sys.stderr)
        return 1
    job_id = client.submit_job(
        entrypoint=build_entrypoint(config, args.overrides),
        runtime_env=runtime_env,
        submission_id=args.submission_id or time.strftime("empathy-rl-grpo-%Y%m%d-%H%M%S"),
        metadata={"project": "empathy-rl", "config": config, "run_dir": cfg.trainer.run_dir},
    )
    print(f"submitted job {job_id}")
    print(f"dashboard: {args.address.rstrip('/')}/#/jobs/{job_id}")
    if args.no_wait:
        print(f"follow with: ray job logs --address {args.address} --follow {job_id}")
        return 0
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (stop it with: ray job stop --address {args.address} {job_id})")
        return 130
    except (RuntimeError, ConnectionError) as err:  # log stream or dashboard lost mid-run
        print(f"cluster.submit: lost the job's log stream ({err}); check: ray job status --address {args.address} {job_id}", file=sys.stderr)
        return 1
    print(f"job {job_id}: {status.value}")
    return 0 if status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
