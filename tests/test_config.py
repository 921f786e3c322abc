"""Tests for the typed configuration schema: loading, overrides, validation errors, YAML round trip."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

from empathy_rl import config as config_module
from empathy_rl.config import (
    ConfigError,
    DataSourceConfig,
    EmpathyRLConfig,
    LoraConfig,
    load_config,
    to_dict,
    to_yaml,
    validate,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-cpu.yaml"
QWEN = REPO / "configs" / "qwen3-8b.yaml"
BASE = ("model.path=x",)


def load(*overrides: str, path: Path | str | None = None) -> EmpathyRLConfig:
    return load_config(path, [*BASE, *overrides])


# --------------------------------------------------------------------------------------------
# Defaults and presets
# --------------------------------------------------------------------------------------------


def test_defaults_load_with_model_path() -> None:
    cfg = load()
    assert isinstance(cfg, EmpathyRLConfig)
    assert cfg.model.path == "x"
    assert isinstance(cfg.model.lora, LoraConfig)
    # a few documented defaults
    assert cfg.rollout.group_size == 4
    assert cfg.trainer.total_steps == 1000
    assert cfg.algorithm.kl_kind == "k3"
    assert cfg.sync.transport == "object_store"
    assert cfg.cluster.device == "cpu"
    assert cfg.learner.betas == [0.9, 0.999]
    assert cfg.data.sources == []
    assert cfg.model.tokenizer_path is None


def test_defaults_equal_dataclass_defaults() -> None:
    expected = EmpathyRLConfig()
    expected.model.path = "x"
    assert to_dict(load()) == to_dict(expected)


def test_tiny_preset_loads_and_validates() -> None:
    cfg = load_config(TINY)
    validate(cfg)
    assert cfg.model.path == "runs/tiny-model"
    assert cfg.cluster.device == "cpu"
    assert cfg.rollout.group_size == 4
    assert cfg.warmstart.run_sft and cfg.warmstart.policy is None
    assert cfg.sft.packing and cfg.sft.output_dir == "runs/sft" and cfg.sft.data == []
    assert cfg.trainer.total_steps == 30
    assert len(cfg.data.sources) == 1
    source = cfg.data.sources[0]
    assert isinstance(source, DataSourceConfig)
    assert source.path == "empathy_rl/assets/seed_posts.jsonl"
    assert source.adapter == "generic"
    assert source.format == "auto"  # default filled in for the list element
    assert cfg.data.val_fraction == pytest.approx(0.1)
    assert cfg.data.test_fraction == 0.0


def test_qwen_preset_loads_and_validates() -> None:
    cfg = load_config(QWEN)
    validate(cfg)
    assert cfg.model.dtype == "bfloat16"
    assert cfg.cluster.device == "cuda"
    assert cfg.sync.transport == "nccl"
    assert cfg.learner.backend == "nccl"
    assert cfg.learner.zero_stage == 3
    assert cfg.rollout.tensor_parallel_size == 2
    assert cfg.learner.num_workers == 8
    assert cfg.data.sources[0].language == "zh"
    assert cfg.reward.num_gpus_per_replica == pytest.approx(0.5)


def test_preset_overridden_by_command_line() -> None:
    cfg = load_config(TINY, ["trainer.total_steps=3", "rollout.group_size=8"])
    assert cfg.trainer.total_steps == 3
    assert cfg.rollout.group_size == 8
    assert cfg.sft.max_len == 512  # untouched preset value survives


# --------------------------------------------------------------------------------------------
# Overrides apply with types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, dotted, expected, typ",
    [
        ("trainer.total_steps=7", "trainer.total_steps", 7, int),
        ("rollout.temperature=0.7", "rollout.temperature", 0.7, float),
        ("rollout.temperature=2", "rollout.temperature", 2.0, float),  # int literal -> float field
        ("logging.progress_bar=false", "logging.progress_bar", False, bool),
        ("model.gradient_checkpointing=true", "model.gradient_checkpointing", True, bool),
        ("learner.betas=[0.8,0.95]", "learner.betas", [0.8, 0.95], list),
        ("cluster.address=auto", "cluster.address", "auto", str),
        ("cluster.num_cpus=3", "cluster.num_cpus", 3, int),
        ("cluster.num_cpus=null", "cluster.num_cpus", None, type(None)),
        ("model.lora.r=8", "model.lora.r", 8, int),
        ("model.lora.target_modules=[q_proj]", "model.lora.target_modules", ["q_proj"], list),
        ("algorithm.aggregation=seq-mean-token-sum", "algorithm.aggregation", "seq-mean-token-sum", str),
        ("learner.lr=3e-4", "learner.lr", 3e-4, float),
    ],
)
def test_overrides_apply_with_types(override: str, dotted: str, expected: object, typ: type) -> None:
    cfg = load(override)
    value = config_module._get(cfg, dotted)
    assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected
    assert type(value) is typ or isinstance(value, typ)


def test_data_sources_override_builds_typed_list() -> None:
    cfg = load("data.sources=[{path: a.jsonl, adapter: counsel_chat}, {path: b.csv, language: zh}]")
    assert [type(s) for s in cfg.data.sources] == [DataSourceConfig, DataSourceConfig]
    assert [s.path for s in cfg.data.sources] == ["a.jsonl", "b.csv"]
    assert [s.adapter for s in cfg.data.sources] == ["counsel_chat", "generic"]
    assert cfg.data.sources[1].language == "zh"


def test_base_argument_is_used_as_schema() -> None:
    base = EmpathyRLConfig()
    base.model.path = "from-base"
    base.trainer.total_steps = 5
    cfg = load_config(None, ["rollout.group_size=6"], base=base)
    assert cfg.model.path == "from-base"
    assert cfg.trainer.total_steps == 5
    assert cfg.rollout.group_size == 6


# --------------------------------------------------------------------------------------------
# Errors name the key
# --------------------------------------------------------------------------------------------


def _error(*overrides: str, path: Path | str | None = None, base: tuple[str, ...] = BASE) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, [*base, *overrides])
    return str(info.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("bogus=1", "bogus"),
        ("rollout.bogus=1", "rollout.bogus"),
        ("model.lora.bogus=1", "model.lora.bogus"),
        ("trainer.totl_steps=3", "trainer.totl_steps"),
    ],
)
def test_unknown_key(override: str, key: str) -> None:
    msg = _error(override)
    assert f"'{key}'" in msg
    assert "command line" in msg


@pytest.mark.parametrize(
    "override, key",
    [
        ("rollout.group_size=abc", "rollout.group_size"),
        ("trainer.total_steps=1.5", "trainer.total_steps"),
        ("learner.lr=fast", "learner.lr"),
        ("logging.progress_bar=maybe", "logging.progress_bar"),
        ("model.max_prompt_len=[1,2]", "model.max_prompt_len"),
        ("model.lora=5", "model.lora"),  # a plain value in place of a whole section
        ("model=3", "model"),
    ],
)
def test_wrong_type(override: str, key: str) -> None:
    assert f"'{key}'" in _error(override)


@pytest.mark.parametrize(
    "override, key",
    [
        ("rollout.temperature=0", "rollout.temperature"),  # exclusive lower bound
        ("rollout.temperature=-1", "rollout.temperature"),
        ("learner.zero_stage=4", "learner.zero_stage"),
        ("learner.zero_stage=-1", "learner.zero_stage"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("data.test_fraction=-0.1", "data.test_fraction"),
        ("rollout.group_size=1", "rollout.group_size"),
        ("rollout.top_p=0", "rollout.top_p"),
        ("rollout.top_p=1.01", "rollout.top_p"),
        ("learner.lr=0", "learner.lr"),
        ("learner.master_port=70000", "learner.master_port"),
        ("model.lora.dropout=1.5", "model.lora.dropout"),
        ("model.max_prompt_len=0", "model.max_prompt_len"),
        ("reward.answer_threshold=1.2", "reward.answer_threshold"),
        ("reward.encoder_max_seq_len=4", "reward.encoder_max_seq_len"),
        ("reward.http_port=0", "reward.http_port"),
        ("reward.http_port=70000", "reward.http_port"),
        ("reward.max_items_per_request=0", "reward.max_items_per_request"),
        ("reward.max_text_chars=0", "reward.max_text_chars"),
        ("reward.max_request_bytes=10", "reward.max_request_bytes"),
        ("reward.request_timeout_s=0", "reward.request_timeout_s"),
        ("reward.max_retries=-1", "reward.max_retries"),
        ("reward.autoscaling_max_replicas=0", "reward.autoscaling_max_replicas"),
        ("reward.autoscaling_target_ongoing_requests=0", "reward.autoscaling_target_ongoing_requests"),
        ("reward.rollout_surge_percent=101", "reward.rollout_surge_percent"),
        ("sft.batch_size=0", "sft.batch_size"),
        ("sft.zero_stage=4", "sft.zero_stage"),
        ("sft.min_lr_ratio=1.5", "sft.min_lr_ratio"),
        ("sft.lora.r=0", "sft.lora.r"),
        ("checkpoint.keep_last=0", "checkpoint.keep_last"),
        ("trainer.eval_temperature=0", "trainer.eval_temperature"),
    ],
)
def test_out_of_range(override: str, key: str) -> None:
    msg = _error(override)
    assert msg.startswith(f"{key}=")
    assert "out of range" in msg


@pytest.mark.parametrize(
    "override",
    [
        "rollout.temperature=0.01",
        "learner.zero_stage=0",
        "learner.zero_stage=3",
        "data.val_fraction=0",
        "rollout.group_size=2",
        "rollout.top_p=1",
        "learner.master_port=65535",
        "reward.answer_threshold=-1",
        "reward.max_retries=0",
        "reward.max_references=0",
        "reward.rollout_surge_percent=0",
        "reward.autoscaling_min_replicas=0",
    ],
)
def test_range_boundaries_accepted(override: str) -> None:
    load(override)


@pytest.mark.parametrize(
    "override, key",
    [
        ("algorithm.kl_kind=k4", "algorithm.kl_kind"),
        ("algorithm.aggregation=sum", "algorithm.aggregation"),
        ("sync.transport=grpc", "sync.transport"),
        ("data.on_bad_row=ignore", "data.on_bad_row"),
        ("model.dtype=float8", "model.dtype"),
        ("rollout.overlong_prompt=wrap", "rollout.overlong_prompt"),
        ("reward.answer_mode=soft", "reward.answer_mode"),
        ("reward.service=http", "reward.service"),
        ("logging.level=info", "logging.level"),  # case-sensitive
        ("cluster.device=tpu", "cluster.device"),
    ],
)
def test_bad_choice(override: str, key: str) -> None:
    msg = _error(override)
    assert msg.startswith(f"{key}=")
    assert "choose one of" in msg


@pytest.mark.parametrize(
    "source, key",
    [
        ("{path: a.jsonl, adapter: reddit}", "data.sources[0].adapter"),
        ("{path: a.jsonl, format: xml}", "data.sources[0].format"),
        ("{path: a.jsonl, language: fr}", "data.sources[0].language"),
        ("{path: a.jsonl, min_answer_chars: -1}", "data.sources[0].min_answer_chars"),
    ],
)
def test_bad_data_source(source: str, key: str) -> None:
    assert key in _error(f"data.sources=[{source}]")


def test_bad_adapter_in_second_source_names_its_index() -> None:
    msg = _error("data.sources=[{path: a.jsonl}, {path: b.jsonl, adapter: nope}]")
    assert "data.sources[1].adapter" in msg
    assert "generic" in msg  # lists what is allowed


def test_data_source_without_path() -> None:
    assert "data.sources[0].path" in _error("data.sources=[{adapter: generic}]")


def test_malformed_override_without_equals() -> None:
    msg = _error("rollout.group_size")
    assert "rollout.group_size" in msg
    assert "key=value" in msg


def test_missing_model_path() -> None:
    msg = _error(base=())
    assert "model.path" in msg


def test_missing_yaml_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    msg = _error(path=missing)
    assert str(missing) in msg
    assert "does not exist" in msg


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("model:\n  path: [unclosed\n", encoding="utf-8")
    msg = _error(path=bad)
    assert str(bad) in msg
    assert "not valid YAML" in msg


@pytest.mark.parametrize(
    "text, key",
    [
        ("model:\n  path: x\n  bogus: 1\n", "model.bogus"),
        ("model:\n  path: x\nrollout:\n  group_size: many\n", "rollout.group_size"),
        ("model:\n  path: x\nnot_a_section: {}\n", "not_a_section"),
        ("model:\n  path: x\n  lora: 5\n", "model.lora"),
        ("rollout: fast\n", "rollout"),
    ],
)
def test_bad_yaml_content_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text(text, encoding="utf-8")
    msg = _error(path=preset, base=())
    assert str(preset) in msg
    assert f"'{key}'" in msg


def test_yaml_top_level_list_is_a_config_error(tmp_path: Path) -> None:
    preset = tmp_path / "list.yaml"
    preset.write_text("- a\n- b\n", encoding="utf-8")
    msg = _error(path=preset)
    assert str(preset) in msg


# --------------------------------------------------------------------------------------------
# Cross-field rules in validate()
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (("sync.transport=nccl",), "sync.transport=nccl"),
        (("learner.backend=nccl",), "learner.backend=nccl"),
        (("rollout.tensor_parallel_size=2",), "rollout.tensor_parallel_size"),
        (("data.val_fraction=0.5", "data.test_fraction=0.5"), "data.val_fraction + data.test_fraction"),
        (("data.val_fraction=0.7", "data.test_fraction=0.4"), "data.val_fraction + data.test_fraction"),
        (
            ("trainer.prompts_per_step=3", "rollout.group_size=4", "learner.mini_batches_per_step=8"),
            "learner.mini_batches_per_step * learner.num_workers",
        ),
        (
            ("trainer.prompts_per_step=3", "rollout.group_size=3", "learner.num_workers=2"),
            "learner.mini_batches_per_step * learner.num_workers",
        ),
        (("learner.betas=[0.9]",), "learner.betas"),
        (("learner.betas=[0.9,1.0]",), "learner.betas"),
        (("learner.betas=[-0.1,0.9]",), "learner.betas"),
        (("learner.betas=[0.9,0.99,0.999]",), "learner.betas"),
        (
            ("cluster.device=cuda", "sync.transport=nccl", "model.lora.enabled=true"),
            "model.lora.enabled",
        ),
        (("reward.http_host=0.0.0.0", "reward.auth_token_env="), "reward.auth_token_env"),
        (("reward.require_token=true", "reward.auth_token_env= "), "reward.auth_token_env"),
        (("reward.service=url",), "reward.service_url"),
        (("reward.service=url", "reward.service_url=reward-host:8000"), "reward.service_url"),
        (("reward.service=url", "reward.service_url=http://h:8000/r", "reward.max_items_per_request=4"), "reward.max_items_per_request"),
        (("reward.autoscaling=true", "reward.autoscaling_min_replicas=3", "reward.autoscaling_max_replicas=2"), "reward.autoscaling_min_replicas"),
    ],
)
def test_cross_field_rules(overrides: tuple[str, ...], needle: str) -> None:
    assert needle in _error(*overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ("cluster.device=cuda", "sync.transport=nccl", "learner.backend=nccl", "rollout.tensor_parallel_size=2"),
        ("data.val_fraction=0.45", "data.test_fraction=0.5"),
        ("trainer.prompts_per_step=3", "rollout.group_size=4", "learner.mini_batches_per_step=2", "learner.num_workers=3"),
        ("learner.betas=[0.0,0.5]",),
        ("reward.http_host=0.0.0.0",),  # the token itself is checked when the service starts, not here
        ("reward.service=url", "reward.service_url=https://reward.internal/empathy-reward"),
        ("reward.autoscaling=false", "reward.autoscaling_min_replicas=3", "reward.autoscaling_max_replicas=2"),
    ],
)
def test_cross_field_rules_accept_valid_combinations(overrides: tuple[str, ...]) -> None:
    load(*overrides)


def test_validate_on_mutated_object() -> None:
    cfg = load()
    validate(cfg)
    cfg.rollout.group_size = 1
    with pytest.raises(ConfigError, match=r"rollout\.group_size"):
        validate(cfg)


# --------------------------------------------------------------------------------------------
# YAML round trip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [TINY, QWEN, None])
def test_to_yaml_round_trips(tmp_path: Path, preset: Path | None) -> None:
    original = load_config(preset, ["model.path=x"] if preset is None else ["trainer.total_steps=3", "learner.betas=[0.8,0.9]"])
    text = to_yaml(original)
    out = tmp_path / "config.yaml"
    out.write_text(text, encoding="utf-8")
    again = load_config(out)
    assert again == original
    assert to_yaml(again) == text


def test_to_yaml_contains_values() -> None:
    text = to_yaml(load("trainer.total_steps=17"))
    assert "total_steps: 17" in text
    assert "path: x" in text


# --------------------------------------------------------------------------------------------
# Every knob has a one-line comment
# --------------------------------------------------------------------------------------------


def _schema_classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(config_module).items()
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == config_module.__name__
    }


def _comment_lines(source: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}


def test_schema_classes_found() -> None:
    names = set(_schema_classes())
    assert {"EmpathyRLConfig", "ModelConfig", "LoraConfig", "DataSourceConfig", "TrainerConfig", "SyncConfig"} <= names


def test_every_knob_has_a_trailing_comment() -> None:
    """Every leaf field (`name: type = default  # comment`) carries a comment on its first line.

    Fields whose type is itself a schema section (`lora: LoraConfig`, the sections of
    `EmpathyRLConfig`) are containers, not knobs, and are exempt; the knobs inside them are checked.
    """
    source = inspect.getsource(config_module)
    comments = _comment_lines(source)
    tree = ast.parse(source)
    sections = set(_schema_classes())
    lines = source.splitlines()
    missing: list[str] = []
    checked = 0
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in sections:
            continue
        fields = [n for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        declared = {f.name for f in dataclasses.fields(getattr(config_module, node.name))}
        assert {f.target.id for f in fields} == declared, node.name  # the AST sees every dataclass field
        for f in fields:
            if isinstance(f.annotation, ast.Name) and f.annotation.id in sections:
                continue  # a section, not a knob
            checked += 1
            if f.lineno not in comments:
                missing.append(f"{node.name}.{f.target.id} (line {f.lineno}: {lines[f.lineno - 1].strip()})")
    assert checked > 100
    assert not missing, "fields without a trailing # comment:\n" + "\n".join(missing)


def test_comment_checker_detects_a_missing_comment() -> None:
    """The checker itself can fail: a field without a comment is found."""
    source = "x: int = 1  # documented\ny: int = 2\nz: str = '# not a comment'\n"
    comments = _comment_lines(source)
    assert comments == {1}


# --------------------------------------------------------------------------------------------
# The reward model (train-rm) section and the answer threshold
# --------------------------------------------------------------------------------------------


def test_answer_threshold_is_optional_and_reference_mode_allowed() -> None:
    cfg = load()
    assert cfg.reward.answer_threshold is None  # None = the T stored by train-rm
    assert load("reward.answer_mode=reference").reward.answer_mode == "reference"
    assert load("reward.answer_threshold=0.25").reward.answer_threshold == pytest.approx(0.25)


def test_tiny_preset_trains_and_uses_a_reward_model() -> None:
    cfg = load_config(TINY)
    assert cfg.reward.encoder == cfg.reward_model.output_dir == "runs/reward-model"
    assert cfg.reward.answer_threshold is None
    assert [s.adapter for s in cfg.reward_model.sources] == ["counsel_chat", "cpsycoun"]
    assert cfg.reward_model.languages == ["en", "zh"]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("reward_model.negatives=[random,echo_exact,paraphrase]", "reward_model.negatives[2]='paraphrase'"),
        ("reward_model.negatives=[]", "reward_model.negatives is empty"),
        ("reward_model.languages=[en,fr]", "reward_model.languages[1]='fr'"),
        ("reward_model.languages=[en,en]", "reward_model.languages"),
        ("reward_model.encoder_zh=bert", "reward_model.encoder_zh='bert'"),
        ("reward_model.eval_split=train", "reward_model.calibration_split and reward_model.eval_split"),
        ("reward_model.margin=0", "reward_model.margin"),
        ("reward_model.echo_truncate_ratio=1", "reward_model.echo_truncate_ratio"),
        ("reward_model.epochs=0", "reward_model.epochs"),
        ("reward_model.fit_timeout_s=0", "reward_model.fit_timeout_s"),
        ("reward_model.val_fraction=0.96", "reward_model.val_fraction + reward_model.test_fraction"),
    ],
)
def test_reward_model_bad_values(override: str, needle: str) -> None:
    assert needle in _error(override)


def test_reward_model_source_choices() -> None:
    msg = _error("reward_model.sources=[{path: x.csv, adapter: nope}]")
    assert "reward_model.sources[0].adapter='nope'" in msg


# --------------------------------------------------------------------------------------------
# GPU-run rules: log-prob agreement, layouts, NCCL, reference sharding
# --------------------------------------------------------------------------------------------

_CUDA = ("cluster.device=cuda", "learner.backend=nccl")


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (("rollout.top_p=0.9",), ("rollout.top_p=0.9", "truncated")),
        (("rollout.top_k=50",), ("rollout.top_k=50", "truncated")),
        ((*_CUDA, "cluster.layout=colocated", "sync.transport=nccl"), ("cluster.layout=colocated", "sync.transport=nccl", "ncclCommInitRank")),
        (("cluster.layout=colocated", "rollout.num_workers=2"), ("learner.num_workers", "rollout.num_workers x")),
        ((*_CUDA, "cluster.layout=colocated", "learner.num_gpus_per_worker=1", "rollout.num_gpus_per_worker=0.5"), ("learner.num_gpus_per_worker", "<= 1 GPU")),
        (("learner.ref_zero_stage=2",), ("learner.ref_zero_stage=2",)),
        (("learner.ref_offload=true",), ("learner.ref_offload", "learner.ref_zero_stage=3")),
        (("rollout.num_cpus_per_worker=0",), ("rollout.num_cpus_per_worker", "rollout.num_gpus_per_worker")),
        ((*_CUDA, "rollout.tensor_parallel_size=2", "rollout.num_gpus_per_worker=4"), ("rollout.num_gpus_per_worker=4", "more than one GPU")),
        (("sync.timeout_s=0",), ("sync.timeout_s",)),
        (("cluster.layout=mixed",), ("cluster.layout",)),
    ],
)
def test_gpu_run_rules(overrides: tuple[str, ...], needles: tuple[str, ...]) -> None:
    msg = _error(*overrides)
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize(
    "overrides",
    [
        ("rollout.top_p=1.0", "rollout.top_k=0"),
        ("cluster.layout=colocated",),
        (*_CUDA, "cluster.layout=colocated", "learner.num_gpus_per_worker=0.5", "rollout.num_gpus_per_worker=0.4"),
        ("learner.zero_stage=3", "learner.ref_offload=true"),  # the reference follows the policy to stage 3
        ("learner.ref_zero_stage=3", "learner.ref_offload=true"),
    ],
)
def test_gpu_run_rules_accept_valid_combinations(overrides: tuple[str, ...]) -> None:
    load(*overrides)


# --------------------------------------------------------------------------------------------
# sft and warmstart
# --------------------------------------------------------------------------------------------


def test_qwen_preset_starts_grpo_from_its_sft_output() -> None:
    cfg = load_config(QWEN)
    assert cfg.warmstart.policy == cfg.sft.output_dir and not cfg.warmstart.run_sft
    assert cfg.sft.zero_stage == 3 and cfg.sft.num_workers == 8 and cfg.sft.packing


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["sft.batch_size=6", "sft.micro_batch_size=4"], "sft.micro_batch_size"),
        (["sft.betas=[0.9]"], "sft.betas"),
        (["sft.data=['']"], "sft.data[0]"),
        (["sft.max_len=1"], "sft.max_len"),
        (["warmstart.run_sft=true", "warmstart.policy=/elsewhere"], "warmstart.run_sft"),
    ],
)
def test_sft_cross_field_rules_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(TINY, overrides)


def test_run_sft_accepts_a_policy_inside_the_sft_output() -> None:
    cfg = load_config(TINY, ["warmstart.policy=runs/sft/policy"])
    assert cfg.warmstart.run_sft and cfg.warmstart.policy == "runs/sft/policy"
    assert load_config(TINY, ["warmstart.run_sft=false", "warmstart.policy=/any/where"]).warmstart.policy == "/any/where"


def test_removed_warmstart_keys_are_unknown() -> None:
    with pytest.raises(ConfigError, match="warmstart.steps"):
        load_config(TINY, ["warmstart.steps=600"])
