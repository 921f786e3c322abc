"""`empathy-rl sft`: rows and labels, packing, the step plan, the fingerprint, the warm-start pointer,
and one real run through Ray Train + DeepSpeed (gloo) whose checkpoint transformers and vLLM load.

The unit tests need no Ray and no model files: a tokenizer is trained in-process on the bundled
text and a randomly initialised Qwen3 is built from a config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

from empathy_rl import coe
from empathy_rl.coe_data import CoERecord, Review, accepted_records, bundled_path, write_records
from empathy_rl.config import ConfigError, load_config
from empathy_rl.sft_data import IGNORE, Example, collate, collate_packed, encode_records, epoch_rows, loss_tokens, pack
from empathy_rl.sft_worker import lr_factor, response_nll, step_plan

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def tokenizer():
    from empathy_rl.tiny_model import train_tokenizer

    records = accepted_records([bundled_path()])
    texts = [*coe.COMPACT_SYSTEM_PROMPTS.values(), *(r.query for r in records), *(r.response() for r in records)]
    return train_tokenizer(texts, vocab_size=900)


@pytest.fixture(scope="module")
def examples(tokenizer) -> list[Example]:
    from rollout.prompts import PromptBuilder

    records = accepted_records([bundled_path()])[::9]  # a dozen, both languages
    built, counts = encode_records(records, PromptBuilder(tokenizer, 400, style="compact"), tokenizer, 200, 1000)
    assert counts["kept"] == len(records) == len(built) and {r.language for r in records} == {"en", "zh"}
    return built


def _model(tokenizer, attn: str = "sdpa"):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, tie_word_embeddings=True,
                         initializer_range=0.2)  # larger weights than the default 0.02: attention (and a leak) matters
    config._attn_implementation = attn
    return Qwen3ForCausalLM(config).eval()


# ------------------------------------------------------------------------------------------ rows


def test_prompt_and_padding_tokens_carry_no_loss(examples, tokenizer) -> None:
    batch = collate(examples[:3], pad_id=tokenizer.pad_token_id)
    for i, e in enumerate(examples[:3]):
        row, labels = batch["input_ids"][i], batch["labels"][i]
        p, n = len(e.prompt), len(e)
        assert row[:n].tolist() == list(e.prompt + e.response)
        assert (labels[:p] == IGNORE).all() and (labels[n:] == IGNORE).all()  # prompt and padding
        assert labels[p:n].tolist() == list(e.response) and e.response[-1] == tokenizer.eos_token_id
        assert batch["attention_mask"][i].sum() == n
        # the response decodes to the record's CoE text: the labels are exactly what the model must write
        assert coe.parse_coe(tokenizer.decode(list(e.response[:-1]))).ok
    assert loss_tokens(batch) == sum(len(e.response) for e in examples[:3])


def _row(examples) -> int:
    return 2 * max(len(e) for e in examples)


def test_packed_rows_restart_positions_and_label_only_responses(examples, tokenizer) -> None:
    rows = pack(examples, max_len=_row(examples))
    assert sorted(e.record_id for row in rows for e in row) == sorted(e.record_id for e in examples)
    assert all(sum(len(e) for e in row) <= _row(examples) for row in rows) and len(rows) < len(examples)
    batch = collate_packed(rows, pad_id=tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        at = 0
        for e in row:
            assert batch["position_ids"][i, at : at + len(e)].tolist() == list(range(len(e)))
            assert (batch["labels"][i, at : at + len(e.prompt)] == IGNORE).all()  # incl. the first token after the previous example
            at += len(e)
        assert (batch["labels"][i, at:] == IGNORE).all() and batch["position_ids"][i, at:].tolist() == list(range(batch["input_ids"].shape[1] - at))
    assert "attention_mask" not in batch  # transformers masks block-diagonally from the position resets
    assert loss_tokens(batch) == sum(len(e.response) for e in examples)
    with pytest.raises(ValueError, match="more than the row length"):
        pack(examples, max_len=10)


def test_encode_records_leaves_out_overlong_responses(tokenizer) -> None:
    from rollout.prompts import PromptBuilder

    long = CoERecord("long", "en", "Title\nText", ("a", "b", "c", "d"), "word " * 200, review=Review(status="accepted"))
    ok = CoERecord("ok", "en", "Title\nText", ("a", "b", "c", "d"), "fine", review=Review(status="accepted"))
    built, counts = encode_records([long, ok], PromptBuilder(tokenizer, 320, style="compact"), tokenizer, 64, 480)
    assert [e.record_id for e in built] == ["ok"] and counts == {"kept": 1, "response_too_long": 1}
    _, counts = encode_records([ok], PromptBuilder(tokenizer, 320, style="compact"), tokenizer, 64, 20)
    assert counts == {"too_long": 1}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(examples, tokenizer, attn: str) -> None:
    """Same examples, same model: summed response NLL and token count are the same packed or not.
    Without the position resets (one long sequence) the examples would see each other, and the loss
    would change: the control below shows the check can fail."""
    model = _model(tokenizer, attn)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        unpacked = [response_nll(model, collate([e], pad)) for e in examples]
        plain = sum(float(n) for n, _ in unpacked), sum(k for _, k in unpacked)
        rows = pack(examples, max_len=_row(examples))
        packed_nll, packed_tokens = response_nll(model, collate_packed(rows, pad))
        control = collate_packed(rows, pad)
        control["position_ids"] = torch.arange(control["input_ids"].shape[1]).expand_as(control["input_ids"])
        leaky, _ = response_nll(model, control)
    assert packed_tokens == plain[1]
    print(f"\n{attn}: unpacked {plain[0]:.4f}, packed {float(packed_nll):.4f}, leaking positions {float(leaky):.4f}")
    assert float(packed_nll) == pytest.approx(plain[0], rel=1e-5)
    assert abs(float(leaky) - plain[0]) > 1e-3 * plain[0]
    # padded batches agree too (the attention mask hides the padding)
    with torch.no_grad():
        batched, tokens = response_nll(model, collate(examples, pad))
    assert tokens == plain[1] and float(batched) == pytest.approx(plain[0], rel=1e-5)


# ------------------------------------------------------------------------------------------ schedule


def test_step_plan_shards_epochs_and_cycles_for_max_steps(examples) -> None:
    base = {"world_size": 2, "batch_size": 2, "seed": 0, "packing": False, "max_len": 480, "max_steps": 0, "epochs": 2}
    per_epoch = len(examples) // 4
    plan = step_plan(examples, base)
    assert len(plan) == 2 * per_epoch and plan[0] == (0, 0) and plan[per_epoch] == (1, 0) and plan[1] == (0, 4)
    assert len(step_plan(examples, {**base, "max_steps": 7 * per_epoch + 1})) == 7 * per_epoch + 1
    assert epoch_rows(examples, 0, 0, False, 480) != epoch_rows(examples, 1, 0, False, 480)  # reshuffled each epoch
    assert epoch_rows(examples, 1, 0, False, 480) == epoch_rows(examples, 1, 0, False, 480)  # and the same on every rank
    with pytest.raises(ValueError, match="sft.batch_size"):
        step_plan(examples, {**base, "batch_size": 64})


def test_lr_warms_up_then_decays_to_the_floor() -> None:
    factors = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------ fingerprint, pointer


def _cfg(tmp_path: Path, model_dir: Path, *extra: str):
    return load_config(TINY, [f"model.path={model_dir}", f"sft.output_dir={tmp_path / 'sft'}", f"sft.storage_path={tmp_path / 'rt'}", *extra])


def _fake_model(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}', encoding="utf-8")
    (path / "model.safetensors").write_bytes(b"0" * 16)
    return path


def test_fingerprint_follows_data_base_model_and_training_keys(tmp_path: Path) -> None:
    from empathy_rl.sft import SFTError, fingerprint

    model = _fake_model(tmp_path / "base")
    data = tmp_path / "coe.jsonl"
    write_records(data, accepted_records([bundled_path()])[:4])
    cfg = _cfg(tmp_path, model, f"sft.data=[{data}]")
    key = fingerprint(cfg)["key"]
    assert fingerprint(_cfg(tmp_path, model, f"sft.data=[{data}]", "sft.log_every=3", "sft.fit_timeout_s=5"))["key"] == key
    assert fingerprint(_cfg(tmp_path, model, f"sft.data=[{data}]", "sft.lr=0.01"))["key"] != key
    assert fingerprint(_cfg(tmp_path, model, f"sft.data=[{data}]", "rollout.system_prompt_style=full"))["key"] != key
    copy = tmp_path / "moved.jsonl"
    copy.write_bytes(data.read_bytes())
    assert fingerprint(_cfg(tmp_path, model, f"sft.data=[{copy}]"))["key"] == key  # content, not location
    write_records(data, accepted_records([bundled_path()])[:5])
    assert fingerprint(cfg)["key"] != key
    (model / "config.json").write_text('{"model_type": "qwen3", "hidden_size": 8}', encoding="utf-8")
    assert fingerprint(_cfg(tmp_path, model, f"sft.data=[{copy}]"))["key"] != key
    with pytest.raises(SFTError, match=r"sft.data\[0\]"):
        fingerprint(_cfg(tmp_path, model, f"sft.data=[{tmp_path / 'absent.jsonl'}]"))
    with pytest.raises(SFTError, match="model.path"):
        fingerprint(_cfg(tmp_path, tmp_path / "nothing"))


def test_warmstart_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from empathy_rl import sft

    model = _fake_model(tmp_path / "base")
    out = tmp_path / "sft"
    assert sft.warmstart_policy(_cfg(tmp_path, model, "warmstart.run_sft=false")) is None
    with pytest.raises(ConfigError, match="warmstart.policy"):
        sft.warmstart_policy(_cfg(tmp_path, model, "warmstart.run_sft=false", f"warmstart.policy={out}"))
    calls = []

    def fake_run(cfg, progress=True):  # stands in for the Ray Train job: writes what it would
        calls.append(cfg.sft.output_dir)
        _fake_model(out / "policy")
        (out / "sft.json").write_text(json.dumps({"inputs": sft.fingerprint(cfg)}), encoding="utf-8")
        return out / "policy"

    monkeypatch.setattr(sft, "run_sft", fake_run)
    cfg = _cfg(tmp_path, model)  # the preset: warmstart.run_sft=true
    assert sft.warmstart_policy(cfg) == str(out / "policy") and len(calls) == 1
    assert sft.is_current(cfg)
    assert sft.warmstart_policy(cfg) == str(out / "policy") and len(calls) == 1  # present: not run again
    stale = _cfg(tmp_path, model, "sft.lr=0.5")
    with caplog.at_level(logging.WARNING, logger="empathy_rl.sft"):
        assert sft.warmstart_policy(stale) == str(out / "policy") and len(calls) == 1
    assert not sft.is_current(stale) and "other inputs" in caplog.text
    both = _cfg(tmp_path, model, "warmstart.run_sft=false", f"warmstart.policy={out}")
    assert sft.warmstart_policy(both) == str(out / "policy")  # an SFT output dir names its policy/
    (out / "sft.json").unlink()  # an interrupted output counts as missing
    assert sft.warmstart_policy(cfg) == str(out / "policy") and len(calls) == 2


def test_bad_data_stops_before_ray_with_file_and_line(tmp_path: Path) -> None:
    from empathy_rl.coe_data import CoEDataError
    from empathy_rl.sft import SFTError, run_sft

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "language": "en", "query": "q", "crisis": "no"}\n', encoding="utf-8")
    model = _fake_model(tmp_path / "base")
    with pytest.raises(CoEDataError, match=rf"{bad}:1: field 'crisis'"):
        run_sft(_cfg(tmp_path, model, f"sft.data=[{bad}]"), progress=False)
    drafts = tmp_path / "drafts.jsonl"
    write_records(drafts, [dataclasses.replace(r, review=Review(status="draft")) for r in accepted_records([bundled_path()])[:3]])
    with pytest.raises(SFTError, match="no accepted record"):
        run_sft(_cfg(tmp_path, model, f"sft.data=[{drafts}]"), progress=False)


# ------------------------------------------------------------------------------------------ the real job


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_sft_through_ray_train_and_deepspeed(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two real runs in one Ray session. First, two Ray Train workers (gloo) with DeepSpeed ZeRO-3
    and packing: the loss falls, sft.json holds the fingerprint and the metrics, and the policy
    (gathered from the shards) loads with transformers and with vLLM, which decode the same greedy
    tokens. Second, LoRA on one worker: the saved policy is the merged full model, under the base
    model's names, and only the adapted projections differ from the base."""
    import ray
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from empathy_rl.sft import SFT_FILE, fingerprint, is_current, run_sft
    from rollout.prompts import PromptBuilder
    from rollout.types import Prompt
    from rollout.vllm_engine import RolloutWorker, engine_env

    steps = 24
    common = [f"model.path={tiny_model_dir}", f"sft.storage_path={tmp_path / 'ray-train'}", "logging.progress_bar=false", "sft.warmup_steps=4"]
    cfg = load_config(TINY, [
        *common, f"sft.output_dir={tmp_path / 'sft'}", f"sft.max_steps={steps}", "sft.lr=2e-2", "sft.batch_size=2",
        "sft.packing=true", "sft.num_workers=2", "sft.num_cpus_per_worker=1", "sft.zero_stage=3",
    ])
    started = not ray.is_initialized()
    try:
        policy = run_sft(cfg, progress=False)
        assert ray.is_initialized()  # left up for the caller's next stage

        out = Path(cfg.sft.output_dir)
        meta = json.loads((out / SFT_FILE).read_text())
        assert meta["inputs"] == fingerprint(cfg) and is_current(cfg)
        assert meta["examples"]["kept"] == meta["examples"]["accepted_records"] > 0  # every bundled example fits the tiny budget
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == list(range(1, steps + 1))
        assert {"loss", "tokens", "lr", "step_s", "row_tokens", "grad_norm"} <= set(records[0])
        first, last = sum(r["loss"] for r in records[:4]) / 4, sum(r["loss"] for r in records[-4:]) / 4
        assert last < first - 1.0, (first, last)
        assert meta["metrics"]["steps"] == steps and meta["metrics"]["final_loss"] == records[-1]["loss"]
        assert not list(Path(cfg.sft.storage_path).glob("sft-*"))  # Ray Train's copy of the run is gone

        tuned = AutoModelForCausalLM.from_pretrained(policy)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        assert set(tuned.state_dict()) == set(base.state_dict())
        assert all(not torch.equal(t, base.state_dict()[n]) for n, t in tuned.state_dict().items() if n.endswith("_proj.weight"))
        tok = AutoTokenizer.from_pretrained(policy)
        assert tok.chat_template and json.loads((policy / "config.json").read_text())["dtype"] == "float32"

        record = accepted_records([bundled_path()])[0]
        ids = PromptBuilder(tok, cfg.model.max_prompt_len, style=cfg.rollout.system_prompt_style).fit(record.language, record.query)[0]
        with torch.no_grad():
            hf = tuned.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        worker = ray.remote(RolloutWorker).options(num_cpus=0.5, runtime_env={"env_vars": engine_env(cfg)}).remote(cfg, str(policy), 0)
        try:
            [cand] = ray.get(worker.generate.remote([Prompt(0, record.id, record.language, record.query, tuple(ids))], 1, 0.0, 0, 12), timeout=300)
        finally:
            ray.kill(worker)
        assert len(cand.token_ids) > 0 and cand.token_ids == hf[: len(cand.token_ids)]

        lora_cfg = load_config(TINY, [
            *common, f"sft.output_dir={tmp_path / 'sft-lora'}", "sft.max_steps=6", "sft.lr=5e-2", "sft.batch_size=4",
            "sft.packing=false", "sft.num_cpus_per_worker=1", "sft.zero_stage=0",
            "sft.lora.enabled=true", "sft.lora.r=8", "sft.lora.alpha=16",
        ])
        merged = AutoModelForCausalLM.from_pretrained(run_sft(lora_cfg, progress=False)).state_dict()
        assert set(merged) == set(base.state_dict())  # merged: the base names, no adapter weights
        changed = {n for n, t in merged.items() if not torch.equal(t, base.state_dict()[n])}
        assert changed and all(n.endswith("_proj.weight") for n in changed)  # LoRA moves only the adapted projections
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
