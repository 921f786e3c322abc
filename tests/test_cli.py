"""Tests for the `empathy-rl` command line (no Ray, vLLM or DeepSpeed: config and data commands only)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from empathy_rl.cli import build_parser, main
from empathy_rl.data import load_records

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny-cpu.yaml")
QWEN = str(REPO / "configs" / "qwen3-8b.yaml")
SEED_POSTS = REPO / "empathy_rl" / "assets" / "seed_posts.jsonl"


@pytest.mark.parametrize(
    "argv, key",
    [
        (["show-config", "--config", TINY, "rollout.bogus=1"], "rollout.bogus"),
        (["show-config", "--config", TINY, "rollout.group_size=1"], "rollout.group_size"),
        (["show-config", "--config", TINY, "algorithm.kl_kind=k9"], "algorithm.kl_kind"),
        (["show-config", "--config", TINY, "trainer.total_steps"], "trainer.total_steps"),
        (["show-config", "trainer.total_steps=3"], "model.path"),  # no preset, no model.path
        (["prepare-data", "--config", TINY, "data.val_fraction=2"], "data.val_fraction"),
    ],
)
def test_bad_config_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str], argv: list[str], key: str) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert key in err
    assert err.startswith("empathy-rl: config error:")
    assert out == ""


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    assert main(["show-config", "--config", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_show_config_tiny_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-config", "--config", TINY]) == 0
    out, err = capsys.readouterr()
    assert "group_size: 4" in out
    parsed = yaml.safe_load(out)
    assert parsed["rollout"]["group_size"] == 4
    assert parsed["model"]["path"] == "runs/tiny-model"
    assert parsed["cluster"]["device"] == "cpu"
    assert err == ""


def test_show_config_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-config", "-c", QWEN, "trainer.total_steps=5", "rollout.group_size=8"]) == 0
    parsed = yaml.safe_load(capsys.readouterr().out)
    assert parsed["trainer"]["total_steps"] == 5
    assert parsed["rollout"]["group_size"] == 8
    assert parsed["learner"]["zero_stage"] == 3  # preset value kept


def test_prepare_data_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    posts = tmp_path / "posts" / "seed_posts.jsonl"
    posts.parent.mkdir()
    shutil.copy(SEED_POSTS, posts)
    n_rows = sum(1 for line in posts.read_text(encoding="utf-8").splitlines() if line.strip())
    prepared = tmp_path / "prepared"
    code = main(
        [
            "prepare-data",
            "--config",
            TINY,
            f"data.sources=[{{path: '{posts}', adapter: generic}}]",
            f"data.prepared_dir={prepared}",
            "logging.progress_bar=false",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    for split in ("train", "validation"):
        assert (prepared / f"{split}.parquet").is_file()
    assert (prepared / "summary.json").is_file()
    assert f"{n_rows} rows read" in out
    assert "records kept:" in out
    assert str(prepared) in out
    train = load_records(prepared, "train")
    validation = load_records(prepared, "validation")
    kept = int(out.split("records kept:")[1].split()[0])
    assert kept == len(train) + len(validation) + len(load_records(prepared, "test"))
    assert train and validation  # val_fraction 0.1 of ~100 posts leaves both non-empty
    assert {r.split for r in train} == {"train"}


def test_prepare_data_missing_source_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        [
            "prepare-data",
            "--config",
            TINY,
            f"data.sources=[{{path: '{tmp_path / 'absent.jsonl'}'}}]",
            f"data.prepared_dir={tmp_path / 'out'}",
            "logging.progress_bar=false",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "data.sources[0].path" in err
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_parser_knows_the_subcommands() -> None:
    parser = build_parser()
    args = parser.parse_args(["make-tiny-model", "out", "--seed", "3", "--no-shared-data"])
    assert (args.command, args.out_dir, args.seed, args.no_shared_data) == ("make-tiny-model", "out", 3, True)
    args = parser.parse_args(["grpo", "--config", "c.yaml", "a=1", "b=2"])
    assert (args.command, args.config, args.overrides) == ("grpo", "c.yaml", ["a=1", "b=2"])
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a sub-command is required


def test_help_lists_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "empathy_rl.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in ("make-tiny-model", "prepare-data", "grpo", "show-config"):
        assert command in result.stdout
