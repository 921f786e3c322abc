"""Every path that writes or logs help-seeker text anonymizes it and keeps it out of INFO logs:
prepared data, the run's samples.jsonl (driver `_samples` -> `RunDirectory.log_samples`), and
in-process reward scoring. Checkpoints hold no sample texts (trainer_state.json: step, version,
data cursor), and evaluation exports (metrics.jsonl, summary.json) hold metrics and record ids;
those are checked in docs/safety.md, not here, because they need the whole Ray loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from empathy_rl.config import DataConfig, DataSourceConfig, EmpathyRLConfig, RewardConfig
from empathy_rl.data.prepare import prepare_data
from empathy_rl.data.records import load_records

ANSWER = "Thank you for telling me. I am worried about your safety; please contact your local emergency services or a crisis line right now, and tell someone you trust."
PII = ["Emily Johnson", "123 Maple Street", "Lincoln High School", "张伟明", "清华大学", "北京市朝阳区建国路88号", "4111 1111 1111 1111"]


def _rows() -> list[dict]:
    return [
        {"id": "a", "title": "Help", "description": "My name is Emily Johnson, I live at 123 Maple Street and go to Lincoln High School. "
         "I have been saving my sleeping pills and I want to die.", "answers": [ANSWER]},
        {"id": "b", "title": "求助", "description": "我叫张伟明，在清华大学读书，住在北京市朝阳区建国路88号。我不想再醒来了，卡号4111 1111 1111 1111被盗。",
         "answers": [ANSWER]},
    ]


def test_prepared_data_has_no_planted_pii_and_no_text_in_info_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "raw.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _rows()), encoding="utf-8")
    cfg = DataConfig(sources=[DataSourceConfig(path=str(src), adapter="generic")], prepared_dir=str(tmp_path / "prep"),
                     min_answer_chars=50, val_fraction=0.0, test_fraction=0.0)
    with caplog.at_level(logging.INFO):
        prepare_data(cfg, progress=False)
    for path in (tmp_path / "prep").iterdir():
        data = path.read_bytes()
        for item in PII:
            assert item.encode() not in data, (path.name, item)
    records = load_records(tmp_path / "prep", "train")
    assert all(r.crisis for r in records)  # indirect warning signs flagged in both languages
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        for fragment in PII + ["sleeping pills", "不想再醒来", "want to die"]:
            assert fragment not in text


def test_samples_jsonl_is_anonymized(tmp_path: Path) -> None:
    from empathy_rl.driver import _samples
    from empathy_rl.run_dir import RunDirectory
    from reward.types import Score
    from rollout.types import Candidate, Prompt, RolloutBatch

    prompt = Prompt(0, "rid", "en", "query with Emily Johnson", (1, 2), crisis=True)
    response = "<answer>Emily Johnson, call me at (555) 123-4567 or visit 123 Maple Street. 我叫张伟明。</answer>"
    rollout = RolloutBatch([prompt], [Candidate(0, [1], [0.0], response, "stop", 1, 0)], 1)
    samples = _samples(rollout, [Score(1.0, 1.0, 0.0, 0.0, 1.0, "")], 1, 4)
    run = RunDirectory(tmp_path / "run", EmpathyRLConfig())
    run.log_samples(samples)
    written = (tmp_path / "run" / "samples.jsonl").read_text(encoding="utf-8")
    for item in ["Emily Johnson", "123 Maple Street", "123-4567", "张伟明"]:
        assert item not in written
    assert "[NAME]" in written and "[ADDRESS]" in written and "[PHONE]" in written
    assert "query with" not in written  # the query itself is not dumped, only the record id


def test_reward_scoring_logs_no_text(caplog: pytest.LogCaptureFixture) -> None:
    from empathy_rl.coe import render_coe
    from reward.model import RewardModel
    from reward.types import ScoreRequest

    model = RewardModel(RewardConfig(answer_weight=0.0))
    query = "I have been saving my sleeping pills, my name is Emily Johnson"
    item = ScoreRequest(query, render_coe(("a", "b", "c", "d"), ANSWER), crisis=True, language="en")
    with caplog.at_level(logging.DEBUG):
        (score,) = model.score([item])
    assert score.crisis == 1.0
    assert "sleeping pills" not in caplog.text and "Emily" not in caplog.text and "emergency services" not in caplog.text
