"""cluster/: runtime_env, the submit CLI (with a fake job client: no Ray, no network) and the YAML files."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from cluster import submit
from cluster.runtime_env import ENV_VARS, EXCLUDES, build_runtime_env, is_excluded
from empathy_rl.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
QWEN = "configs/qwen3-8b.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob-qwen3-8b.yaml"


# ------------------------------------------------------------------------------ runtime_env


def test_runtime_env_ships_the_repo_without_local_state():
    env = build_runtime_env(load_config(REPO / QWEN), str(REPO))
    assert env["working_dir"] == str(REPO)
    assert set(env["excludes"]) >= {"/.venv", "/runs", "/.cache", "/.git", "/tests"}
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert env["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "pip" not in env and not any(k.startswith("NCCL") for k in env["env_vars"])
    assert is_excluded("runs/tiny-model") and is_excluded(".venv/bin/python") and not is_excluded("configs/qwen3-8b.yaml")
    from ray._private.runtime_env.packaging import _get_excludes  # the matcher Ray applies when packaging

    skip = _get_excludes(REPO, env["excludes"])
    assert skip(REPO / "runs" / "demo" / "metrics.jsonl") and skip(REPO / "tests" / "test_cluster.py")
    assert not skip(REPO / "empathy_rl" / "config.py") and not skip(REPO / "learner" / "runs.py")


def test_driver_joining_a_cluster_passes_no_second_runtime_env(monkeypatch):
    """Inside a job the job's runtime env reaches every actor; a second one from the driver's
    ray.init() that repeats its variables makes Ray refuse to start, so none may be passed."""
    import ray

    from empathy_rl import driver

    seen: dict = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    driver.init_ray(load_config(REPO / QWEN))
    assert seen["address"] == "auto" and "runtime_env" not in seen
    seen.clear()
    driver.init_ray(load_config(REPO / "configs/tiny-cpu.yaml"))  # local cluster: the run's env goes along
    assert "address" not in seen and seen["runtime_env"]["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"


def test_cluster_unsafe_paths_are_rejected():
    with pytest.raises(ValueError, match="trainer.run_dir"):  # tiny-cpu writes to runs/demo
        build_runtime_env(load_config(REPO / "configs/tiny-cpu.yaml"), str(REPO))
    cfg = load_config(REPO / "configs/tiny-cpu.yaml", ["trainer.run_dir=/mnt/runs/demo"])
    with pytest.raises(ValueError, match="model.path"):  # runs/tiny-model is never uploaded
        build_runtime_env(cfg, str(REPO))


# ------------------------------------------------------------------------------ submit


def test_entrypoint_quotes_values_and_forces_the_cluster_address():
    entry = submit.build_entrypoint(QWEN, ["trainer.run_dir=/mnt/runs/my run", "cluster.address=ray://elsewhere:10001"])
    assert entry == f"empathy-rl grpo --config {QWEN} 'trainer.run_dir=/mnt/runs/my run' cluster.address=auto"
    assert shlex.split(entry)[-2:] == ["trainer.run_dir=/mnt/runs/my run", "cluster.address=auto"]
    assert submit.build_entrypoint(QWEN, []) == f"empathy-rl grpo --config {QWEN} cluster.address=auto"


def test_config_path_is_made_relative_to_the_uploaded_repo(tmp_path):
    assert submit.config_in_working_dir(str(REPO / QWEN), REPO) == QWEN
    outside = tmp_path / "mine.yaml"
    outside.write_text("{}")
    with pytest.raises(ConfigError, match="outside"):
        submit.config_in_working_dir(str(outside), REPO)


def test_gpu_arithmetic_of_the_8b_preset():
    assert submit.gpus_requested(submit.validate_job(REPO / QWEN, [])) == {"learner": 8, "rollout": 6, "reward": 1.0}


class FakeJobClient:
    """Stands in for ray.job_submission.JobSubmissionClient; records what would be sent."""

    instances: list["FakeJobClient"] = []
    final_status = "SUCCEEDED"

    def __init__(self, address: str):
        self.address, self.submitted = address, {}
        FakeJobClient.instances.append(self)

    def submit_job(self, **kwargs) -> str:
        self.submitted = kwargs
        return kwargs["submission_id"]

    async def tail_job_logs(self, job_id: str):
        yield "step 1/1000 reward 0.500±0.100 format 1.00 kl 0.0000\n"

    def get_job_status(self, job_id: str):
        from ray.job_submission import JobStatus

        return JobStatus(self.final_status)


@pytest.fixture
def fake_client(monkeypatch):
    import ray.job_submission

    FakeJobClient.instances = []
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeJobClient)
    return FakeJobClient


def test_bad_override_fails_before_any_submission(fake_client, capsys):
    with pytest.raises(ConfigError, match="rollout.num_workers"):
        submit.validate_job(REPO / QWEN, ["rollout.num_workers=0"])
    assert submit.main(["--address", "http://head:8265", "--config", QWEN, "rollout.nope=1"]) == 2
    assert fake_client.instances == []  # no client, so no network
    assert "config error" in capsys.readouterr().err


def test_submit_no_wait_sends_the_validated_job(fake_client, capsys):
    argv = ["--address", "http://head:8265/", "--config", str(REPO / QWEN), "--no-wait", "--submission-id", "t1", "rollout.num_workers=8"]
    assert submit.main(argv) == 0
    sent = fake_client.instances[0].submitted
    assert sent["entrypoint"] == f"empathy-rl grpo --config {QWEN} rollout.num_workers=8 cluster.address=auto"
    assert sent["runtime_env"]["working_dir"] == str(REPO) and sent["submission_id"] == "t1"
    assert sent["metadata"]["run_dir"] == "/mnt/runs/empathy-r1-grpo"
    assert "http://head:8265/#/jobs/t1" in capsys.readouterr().out


@pytest.mark.parametrize("status, code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_submit_streams_logs_and_reports_the_job_status(fake_client, monkeypatch, capsys, status, code):
    monkeypatch.setattr(FakeJobClient, "final_status", status)
    assert submit.main(["--address", "http://head:8265", "--config", QWEN]) == code
    out = capsys.readouterr().out
    assert "step 1/1000 reward" in out and f": {status}" in out


# ------------------------------------------------------------------------------ YAML / image


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.yaml")), ids=lambda p: p.name)
def test_cluster_yaml_parses(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_rayjob_runs_a_valid_8b_job_on_the_gpus_it_asks_for():
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:3] == ["empathy-rl", "grpo", "--config"] and args[3].endswith(QWEN)
    assert args[-1] == "cluster.address=auto"
    cfg = load_config(REPO / QWEN, args[4:])  # the manifest's overrides are valid today
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) for g in workers)
    asked = submit.gpus_requested(cfg)
    assert sum(asked.values()) <= gpus and all(v == int(v) for v in asked.values())


def _preset_dirs(cfg) -> set[str]:
    """The top-level mount points (/mnt/models, ...) under which the preset reads and writes."""
    paths = [cfg.model.path, cfg.data.prepared_dir, cfg.reward.encoder, cfg.trainer.run_dir, *(s.path for s in cfg.data.sources)]
    return {"/" + "/".join(Path(p).parts[1:3]) for p in paths if p.startswith("/")}


def _whole_gpus(asked: dict[str, float]) -> int:
    """A GPU holding a fractional reservation (the reward replicas) cannot serve a whole-GPU request."""
    import math

    return int(sum(v for k, v in asked.items() if k != "reward") + math.ceil(asked["reward"]))


def test_rayjob_cpus_memory_and_mounts_fit_the_8b_preset():
    job = yaml.safe_load(RAYJOB.read_text())
    cfg = load_config(REPO / QWEN, shlex.split(job["spec"]["entrypoint"])[4:])
    spec = job["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no training actor lands on the head
    workers = spec["workerGroupSpecs"]
    cpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) for g in workers)
    assert sum(submit.cpus_requested(cfg).values()) <= cpus
    gpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) for g in workers)
    assert _whole_gpus(submit.gpus_requested(cfg)) <= gpus
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in workers]:
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert _preset_dirs(cfg) <= mounts, f"the preset uses {_preset_dirs(cfg) - mounts}, not mounted"
    for group in workers:  # the object store lives in /dev/shm: it must fit there
        shm = next(v for v in group["template"]["spec"]["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
        assert int(group["rayStartParams"]["object-store-memory"]) <= int(shm.removesuffix("Gi")) * 2**30


# GPUs and vCPUs per AWS instance type named in cluster-launcher.yaml (from AWS's instance tables).
AWS_INSTANCES = {"p4d.24xlarge": (8, 96), "p5.48xlarge": (8, 192), "m7i.4xlarge": (0, 16)}


def test_cluster_launcher_fits_the_8b_preset():
    launcher = yaml.safe_load((CLUSTER / "cluster-launcher.yaml").read_text())
    cfg = load_config(REPO / QWEN)
    nodes = launcher["available_node_types"]
    head = nodes[launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in " ".join(launcher["head_start_ray_commands"])
    workers = [n for name, n in nodes.items() if name != launcher["head_node_type"]]
    gpus = sum(n["min_workers"] * AWS_INSTANCES[n["node_config"]["InstanceType"]][0] for n in workers)
    cpus = sum(n["min_workers"] * AWS_INSTANCES[n["node_config"]["InstanceType"]][1] for n in workers)
    assert _whole_gpus(submit.gpus_requested(cfg)) <= gpus and sum(submit.cpus_requested(cfg).values()) <= cpus
    assert launcher["max_workers"] >= sum(n["min_workers"] for n in workers)
    setup = " ".join(launcher["setup_commands"])
    for mount in _preset_dirs(cfg):  # every path the preset uses is linked on every node
        assert mount.split("/")[-1] in setup.split("for d in ")[1].split(";")[0], mount
    assert {f"/{e.strip('/')}" for e in launcher["rsync_exclude"]} <= set(EXCLUDES)


def test_pins_in_cluster_files_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    vllm = next(d for d in project["optional-dependencies"]["gpu"] if d.startswith("vllm=="))
    ray_version = re.search(r"ray\[[^\]]*\]==([\d.]+)", " ".join(project["dependencies"])).group(1)
    assert vllm in (CLUSTER / "kuberay" / "Dockerfile.gpu").read_text()
    assert vllm in (CLUSTER / "cluster-launcher.yaml").read_text()
    assert yaml.safe_load(RAYJOB.read_text())["spec"]["rayClusterSpec"]["rayVersion"] == ray_version
