"""Human ranking (Win@K): export of anonymised shuffled sets, the SQLite store, the ranking pages,
the report (Win@K, mean rank, Kendall's W, hand-checked), the LLM judge against a fake
OpenAI-compatible server, and (slow) the page end to end in headless Chromium via selenium."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from empathy_rl.coe import render_coe
from empathy_rl.config import EmpathyRLConfig, ModelConfig, RankConfig, load_config
from empathy_rl.evaluation import Generation, System, eval_records, evaluate_systems
from empathy_rl.ranking.judge import JudgeError, parse_ranking, run_judge
from empathy_rl.ranking.pages import add_ranking_pages
from empathy_rl.ranking.report import kendalls_w, rank_report
from empathy_rl.ranking.sets import RankingError, export_sets, load_cases, load_key
from empathy_rl.ranking.store import RankingStore, RankingStoreError
from empathy_rl.webapp.server import App, Server

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny-cpu.yaml"
SYSTEMS = ("counsellor", "other-question", "short")


def test_kendalls_w_hand_checked() -> None:
    # 3 raters rank 3 answers: (1,2,3), (1,2,3), (1,3,2). Rank sums 3, 7, 8; mean 6;
    # S = 9 + 1 + 4 = 14; W = 12 S / (m^2 (n^3 - n)) = 168 / (9 * 24) = 7/9.
    assert kendalls_w([[1, 2, 3], [1, 2, 3], [1, 3, 2]]) == pytest.approx(7 / 9)
    assert kendalls_w([[1, 2], [1, 2]]) == pytest.approx(1.0)
    assert kendalls_w([[1, 2], [2, 1]]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        kendalls_w([[1, 2, 3]])


def test_win_at_k_and_mean_rank_hand_checked() -> None:
    key = {"c1": ["A", "B", "C"], "c2": ["C", "A", "B"]}
    rows = [  # ranks by position
        ("r1", "c1", [1, 2, 3]),  # A1 B2 C3
        ("r2", "c1", [2, 1, 3]),  # A2 B1 C3
        ("r1", "c2", [3, 1, 2]),  # C3 A1 B2
    ]
    rep = rank_report(rows, key, ks=(1, 2), resamples=100, seed=0)
    a, b, c = (rep["systems"][s] for s in "ABC")
    assert a["win@1"] == pytest.approx(2 / 3) and b["win@1"] == pytest.approx(1 / 3) and c["win@1"] == 0.0
    assert a["win@2"] == 1.0 and b["win@2"] == 1.0 and c["win@2"] == 0.0
    assert a["mean_rank"] == pytest.approx(4 / 3) and c["mean_rank"] == 3.0
    # case c1 has two raters: rank sums A 3, B 3, C 6 (mean 4): S = 1 + 1 + 4 = 6; W = 72 / (4 * 24) = 0.75
    assert rep["agreement"]["per_case"] == {"c1": pytest.approx(0.75)}
    lo, hi = a["intervals"]["win@1"]
    assert 0 <= lo <= a["win@1"] <= hi <= 1
    with pytest.raises(RankingError, match="case 'zz'"):
        rank_report([("r1", "zz", [1, 2])], key)


def _eval_dir(tmp_path: Path) -> tuple[Path, int]:
    """An eval output on held-out shared data (zh + en) with three known systems."""
    from shared_slice import prepare_shared_slice

    prepared = prepare_shared_slice(tmp_path / "data", en_questions=2, zh_dialogues=4)
    cfg = load_config(TINY, [f"data.prepared_dir={prepared}", "eval.split=test", "reward.answer_weight=0",
                             "eval.bootstrap_resamples=0", "eval.plots=false", "logging.progress_bar=false"],
                      base=EmpathyRLConfig(model=ModelConfig(path="")))
    records = eval_records(cfg)
    coe = lambda a: render_coe(["feel", "cause", "intent", "plan"], a)  # noqa: E731
    other = [[o for o in records if o.language == r.language and o.id != r.id][0] for r in records]
    gens = {
        "counsellor": [Generation(r.id, 0, coe(r.answers[0] + " mail me: someone@example.com"), "stop") for r in records],
        "other-question": [Generation(r.id, 0, coe(o.answers[0]), "stop") for r, o in zip(records, other)],
        "short": [Generation(r.id, 0, coe(r.answers[0][:40]), "stop") for r in records],
    }
    out = tmp_path / "eval"
    evaluate_systems(cfg, [System(s, "-", "-") for s in SYSTEMS], out, generations=gens)
    return out, len(records)


def test_export_anonymises_shuffles_and_keeps_the_key_apart(tmp_path: Path) -> None:
    eval_dir, n = _eval_dir(tmp_path)
    sets = tmp_path / "sets"
    assert export_sets(eval_dir, sets, seed=1) == n
    cases, key = load_cases(sets), load_key(sets)
    assert len(cases) == n and set(key) == {c.case_id for c in cases}
    assert {c.language for c in cases} == {"en", "zh"}
    raw = (sets / "cases.jsonl").read_text(encoding="utf-8")
    assert "someone@example.com" not in raw
    assert not any(s in raw for s in SYSTEMS)  # raters' file names no system
    assert all(sorted(v) == sorted(SYSTEMS) for v in key.values())
    assert len({tuple(v) for v in key.values()}) > 1  # order differs between cases
    assert export_sets(eval_dir, tmp_path / "two", systems_per_case=2, max_cases=2, seed=0) == 2
    assert all(len(c.answers) == 2 for c in load_cases(tmp_path / "two"))
    with pytest.raises(RankingError, match="generations.jsonl"):
        export_sets(tmp_path / "nothing", sets)


def test_store_and_pages_validate_input(tmp_path: Path) -> None:
    eval_dir, _ = _eval_dir(tmp_path)
    export_sets(eval_dir, tmp_path / "sets")
    cases = load_cases(tmp_path / "sets")
    store = RankingStore(tmp_path / "r.sqlite")
    app = add_ranking_pages(App(), cases, store)
    assert app.dispatch("GET", "/rank?rater=ann", b"").headers["Location"] == "/rank/ann/1"
    assert app.dispatch("GET", "/rank/bad name/1", b"").status == 400
    assert app.dispatch("GET", "/rank/ann/99", b"").status == 404
    assert app.dispatch("POST", "/api/rank/ann/1", b'{"ranks": [1, 1, 2]}').status == 422
    assert app.dispatch("POST", "/api/rank/ann/1", b"not json").status == 400
    ok = app.dispatch("POST", "/api/rank/ann/1", b'{"ranks": [3, 1, 2]}')
    assert ok.status == 200 and json.loads(ok.body) == {"next": "/rank/ann/2", "done": 1, "total": len(cases)}
    page = app.dispatch("GET", "/rank/ann/1", b"").body.decode()
    assert '"ranks": [3, 1, 2]' in page and "1 / " in page
    assert store.get("ann", cases[0].case_id) == [3, 1, 2]
    with pytest.raises(RankingStoreError):
        store.save("a b", "c", [1])


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions: ranks answers by length (longest first), or garbage when asked."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeOpenAI.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        parts = prompt.split("\n\nAnswer ")[1:]
        lengths = {int(p.split(":", 1)[0]): len(p) for p in parts}
        order = sorted(lengths, key=lambda i: -lengths[i])
        content = "sorry, cannot" if "GARBAGE" in prompt else f"Here you go: {json.dumps({'ranking': order})}"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


def test_llm_judge_against_fake_openai_server(tmp_path: Path, monkeypatch) -> None:
    eval_dir, n = _eval_dir(tmp_path)
    sets = tmp_path / "sets"
    export_sets(eval_dir, sets, seed=2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "sk-test")
    cfg = RankConfig(judge_url=f"http://127.0.0.1:{server.server_address[1]}/v1", judge_model="fake-judge",
                     judge_key_env="JUDGE_KEY_FOR_TEST", judge_rater="judge")
    store = RankingStore(tmp_path / "r.sqlite")
    try:
        result = run_judge(cfg, load_cases(sets), store, progress=False)
        assert result.ranked == n and result.failed == []
        assert _FakeOpenAI.seen[-1]["path"] == "/v1/chat/completions"
        assert _FakeOpenAI.seen[-1]["auth"] == "Bearer sk-test"
        assert _FakeOpenAI.seen[-1]["body"]["model"] == "fake-judge"
        assert run_judge(cfg, load_cases(sets), store, progress=False).ranked == 0  # resumable: nothing left
        rep = rank_report(store.all(), load_key(sets), ks=(1,), resamples=50)
        # longest answer first: the full counsellor answer always beats its first 40 characters
        assert rep["systems"]["short"]["mean_rank"] > rep["systems"]["counsellor"]["mean_rank"]
        assert rep["raters"] == ["judge"] and rep["judgments"] == n
    finally:
        server.shutdown()
        server.server_close()
        store.close()
    with pytest.raises(JudgeError, match="unreachable"):
        run_judge(RankConfig(judge_url="http://127.0.0.1:9/v1", judge_model="m", judge_timeout_s=5), load_cases(sets),
                  RankingStore(tmp_path / "x.sqlite"), progress=False)
    assert parse_ranking('{"ranking": [2, 1, 3]}', 3) == [2, 1, 3]
    assert parse_ranking('{"ranking": [3, 1, 2]}', 3) == [2, 3, 1]  # position 3 best -> rank 1
    assert parse_ranking('{"ranking": [1, 1, 2]}', 3) is None and parse_ranking("no json", 2) is None


@pytest.mark.slow
def test_rank_page_end_to_end_in_headless_chromium(tmp_path: Path, chromium_browser, page_wait) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    from empathy_rl.cli import main

    eval_dir, n = _eval_dir(tmp_path)
    sets = tmp_path / "sets"
    cli = ["--config", str(TINY), "--sets", str(sets), "logging.progress_bar=false", "rank.bootstrap_resamples=100"]
    assert main(["rank", "export", *cli, "--eval-dir", str(eval_dir)]) == 0
    cases, key = load_cases(sets), load_key(sets)
    db = sets / "rankings.sqlite"
    store = RankingStore(db)
    server = Server(add_ranking_pages(App(), cases, store), "127.0.0.1", 0).start()
    browser = chromium_browser
    wait = page_wait(browser, 30)
    try:
        browser.get(server.url + "/")
        name = wait.until(ec.presence_of_element_located((By.ID, "rater")))
        name.send_keys("alice", Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "1"))
        assert f"0 / {n} ranked" in browser.find_element(By.ID, "progress").text
        body = browser.find_element(By.TAG_NAME, "body")
        # case 1: the first answer is selected; "2" ranks it 2nd and moves down, "1" ranks the 2nd answer first,
        # "3" the third; Enter saves and opens case 2
        body.send_keys("2", "1", "3", Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "2"))
        assert f"1 / {n} ranked" in browser.find_element(By.ID, "progress").text
        body = browser.find_element(By.TAG_NAME, "body")
        # case 2: Enter before every answer has a rank is refused; then move with arrows: answer 3 best
        body.send_keys("1", Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "every answer"))
        body.send_keys(Keys.ARROW_DOWN, "1", Keys.ARROW_UP, Keys.ARROW_UP, "3", "2", Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "3"))
        # reload, then resume from the start page: lands on the first unranked case (3), progress kept
        browser.refresh()
        wait.until(ec.text_to_be_present_in_element((By.ID, "progress"), f"2 / {n} ranked"))
        browser.get(server.url + "/rank?rater=alice")
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "3"))
        # back with the left arrow twice: case 1 shows the saved ranks
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "2"))
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(ec.text_to_be_present_in_element((By.ID, "case-index"), "1"))
        shown = [browser.find_element(By.ID, f"answer-{i}").get_attribute("data-rank") for i in (1, 2, 3)]
        assert shown == ["2", "1", "3"]
    finally:
        server.stop()
        store.close()
    rows = sqlite3.connect(db).execute("SELECT rater, case_id, ranks FROM rankings ORDER BY case_id").fetchall()
    saved = {case_id: json.loads(ranks) for _, case_id, ranks in rows}
    assert {r for r, _, _ in rows} == {"alice"}
    assert saved == {cases[0].case_id: [2, 1, 3], cases[1].case_id: [3, 2, 1]}
    # the report joins the database with the key: the system at the position ranked 1 wins each case
    assert main(["rank", "report", *cli]) == 0
    rep = json.loads((sets / "rank_report.json").read_text(encoding="utf-8"))
    winners = [key[cases[0].case_id][1], key[cases[1].case_id][2]]
    for system in SYSTEMS:
        assert rep["systems"][system]["win@1"] == pytest.approx(winners.count(system) / 2)
    assert rep["judgments"] == 2 and rep["agreement"]["kendalls_w_mean"] is None
    assert "Win@1" in (sets / "rank_report.md").read_text(encoding="utf-8")
