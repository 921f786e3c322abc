"""The CoE review page: store transitions, audit log, atomic rewrites, file lock, input checks, the
origin checks of the shared web app, and (slow) the page driven by keyboard only in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from empathy_rl import coe_data
from empathy_rl.coe import render_coe
from empathy_rl.coe_data import CoERecord, Provenance, Review, accepted_records, bundled_path, read_records, write_records
from empathy_rl.review.pages import add_review_pages
from empathy_rl.review.store import ReviewError, ReviewStore, record_version
from empathy_rl.webapp.server import App, Server

CREATED = "2026-01-02T03:04:05Z"


def _drafts(path: Path, n: int = 5) -> list[CoERecord]:
    """`n` drafts made from the shipped seed records; the third never parsed (raw teacher output kept)."""
    records = read_records(bundled_path())[:n]
    for rec in records:
        rec.provenance = Provenance("drafted", "teacher-x", CREATED)
        rec.review = Review()
    failed = records[2]
    failed.raw = render_coe(failed.layers, failed.answer).rsplit("<answer>", 1)[0]  # stopped before the answer
    failed.parse_error = "missing_tag"
    failed.layers, failed.answer = ("", "", "", ""), ""
    write_records(path, records)
    return records


def _audit(store: ReviewStore) -> list[dict]:
    if not store.audit_path.exists():
        return []
    return [json.loads(line) for line in store.audit_path.read_text(encoding="utf-8").splitlines()]


def test_transitions_edit_provenance_and_audit(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "Ana Reviewer")
    a, b = records[0].id, records[1].id

    out = store.accept(a)
    assert out["status"] == "accepted" and out["changed"] == ["review.status"]
    saved = {r.id: r for r in read_records(path)}
    assert saved[a].review.reviewer == "Ana Reviewer" and saved[a].review.reviewed_at.endswith("Z")
    assert store.accept(a)["changed"] == []  # already accepted: nothing written, no audit line
    store.reject(b)
    assert {r.id for r in accepted_records([path])} == {a}

    # a content edit of an accepted record: source "edited" (model and created_at kept), back to draft
    new_l2 = records[0].layers[1] + " Also worried about letting the team down."
    out = store.edit(a, {"L2": new_l2, "notes": "L2 sharpened"})
    assert out["status"] == "draft" and out["source"] == "edited"
    rec = {r.id: r for r in read_records(path)}[a]
    assert rec.layers[1] == new_l2 and rec.review.notes == "L2 sharpened" and rec.review.reviewer is None
    assert (rec.provenance.source, rec.provenance.model, rec.provenance.created_at) == ("edited", "teacher-x", CREATED)
    assert rec.id not in {r.id for r in accepted_records([path])}
    store.accept(a)
    # a notes-only edit leaves provenance and the decision alone; an unchanged edit writes nothing
    out = store.edit(b, {"notes": "off topic"})
    assert out["status"] == "rejected" and out["source"] == "drafted" and out["changed"] == ["notes"]
    assert store.edit(b, {"notes": "off topic"})["changed"] == []
    store.reopen(b)
    assert {r.id: r for r in read_records(path)}[b].review.status == "draft"

    log = _audit(store)
    assert [(e["action"], e["id"], e["status"]["old"], e["status"]["new"]) for e in log] == [
        ("accept", a, "draft", "accepted"), ("reject", b, "draft", "rejected"), ("edit", a, "accepted", "draft"),
        ("accept", a, "draft", "accepted"), ("edit", b, "rejected", "rejected"), ("reopen", b, "rejected", "draft"),
    ]
    assert all(e["reviewer"] == "Ana Reviewer" and e["time"].endswith("Z") for e in log)
    assert log[2]["changes"] == {
        "L2": {"old": records[0].layers[1], "new": new_l2},
        "notes": {"old": "", "new": "L2 sharpened"},
        "provenance.source": {"old": "drafted", "new": "edited"},
    }
    assert "changes" not in log[0]


def test_incomplete_record_is_refused_until_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    failed = records[2]
    store = ReviewStore(path, "ana")
    before = path.read_bytes()
    with pytest.raises(ReviewError, match="cannot be accepted: layer L1 is empty.*teacher's output did not parse") as err:
        store.accept(failed.id)
    assert err.value.status == 422 and path.read_bytes() == before and _audit(store) == []
    fill = dict(zip(("L1", "L2", "L3", "L4"), read_records(bundled_path())[2].layers))
    store.edit(failed.id, {**fill})
    with pytest.raises(ReviewError, match="answer is empty"):
        store.accept(failed.id)
    store.edit(failed.id, {"answer": "That sounds heavy. What would help most this week?"})
    assert store.accept(failed.id)["status"] == "accepted"
    rec = {r.id: r for r in read_records(path)}[failed.id]
    assert rec.complete and rec.raw == failed.raw and rec.provenance.source == "edited"


def test_rewrite_is_atomic_and_a_failed_write_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "ana")
    before = path.read_bytes()

    def crash(src, dst):  # the rename that publishes the new file never happens
        raise OSError("disk gone")

    monkeypatch.setattr(coe_data.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.accept(records[0].id)
    monkeypatch.undo()
    assert path.read_bytes() == before and _audit(store) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drafts.jsonl", "drafts.jsonl.lock"]  # no temp file left
    assert store.records()[0].review.status == "draft"  # the in-memory view did not move either
    store.accept(records[0].id)
    assert read_records(path)[0].accepted and len(_audit(store)) == 1


def test_resume_position_progress_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "ana")
    app = add_review_pages(App(), store)
    assert app.dispatch("GET", "/", b"").headers["Location"] == "/review"
    assert app.dispatch("GET", "/review", b"").headers["Location"] == "/review/1?status=draft"
    post = lambda n, action, body: app.dispatch("POST", f"/api/review/{n}/{action}?status=draft", json.dumps(body).encode())
    out = post(1, "accept", {"id": records[0].id})
    assert out.status == 200 and json.loads(out.body)["next"] == "/review/2?status=draft"
    assert json.loads(post(2, "reject", {"id": records[1].id}).body)["next"] == "/review/3?status=draft"
    assert store.first_draft() == 2
    assert app.dispatch("GET", "/review", b"").headers["Location"] == "/review/3?status=draft"
    assert app.dispatch("GET", "/review?status=rejected", b"").headers["Location"] == "/review/2?status=rejected"
    page = app.dispatch("GET", "/review/3", b"").body.decode()
    assert "2 / 5 reviewed" in page and "ana" in page and "missing_tag" in page and "&lt;empathy_think&gt;" in page
    # j/k under the draft filter skip decided records: record 4's previous draft is 3, record 3 has none
    assert '"prev": null' in page and '"next": "/review/4?status=draft"' in page
    # deciding the last draft wraps to a draft skipped earlier; with none left: the done page
    assert json.loads(post(5, "reject", {"id": records[4].id}).body)["next"] == "/review/3?status=draft"
    post(3, "reject", {"id": records[2].id})
    assert json.loads(post(4, "accept", {"id": records[3].id}).body)["next"] == "/review/done?status=draft"
    assert store.first_draft() is None and app.dispatch("GET", "/review", b"").headers["Location"] == "/review/done?status=draft"
    done = app.dispatch("GET", "/review/done?status=draft", b"").body.decode()
    assert "5 / 5 reviewed" in done and "2 accepted" in done
    assert json.loads(app.dispatch("GET", "/api/review/progress", b"").body) == {
        "draft": 0, "accepted": 2, "rejected": 3, "total": 5, "reviewed": 5}


def test_bad_post_input_gets_4xx_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "ana", max_field_chars=50)
    app = add_review_pages(App(), store)
    rid = records[0].id
    before = path.read_bytes()

    def post(body: bytes, target: str = "/api/review/1/edit") -> tuple[int, str]:
        res = app.dispatch("POST", target, body)
        return res.status, json.loads(res.body)["error"]

    cases = [
        (b"not json", "/api/review/1/edit", 400, "not JSON"),
        (b"[1]", "/api/review/1/edit", 400, "JSON object"),
        (json.dumps({"id": rid, "extra": 1}).encode(), "/api/review/1/edit", 400, "'extra'"),
        (json.dumps({"id": rid}).encode(), "/api/review/1/edit", 400, "field 'fields'"),
        (json.dumps({"id": rid, "fields": {"query": "x"}}).encode(), "/api/review/1/edit", 400, "'fields.query' cannot be edited"),
        (json.dumps({"id": rid, "fields": {"L1": 3}}).encode(), "/api/review/1/edit", 400, "'fields.L1' must be a string"),
        (json.dumps({"id": rid, "fields": {"answer": "x" * 51}}).encode(), "/api/review/1/edit", 400, "'fields.answer' is 51 characters"),
        (json.dumps({"id": 7}).encode(), "/api/review/1/accept", 400, "field 'id'"),
        (json.dumps({"id": rid, "fields": {"L1": "x"}}).encode(), "/api/review/1/accept", 400, "field 'fields' belongs to an edit"),
        (json.dumps({"id": records[1].id}).encode(), "/api/review/1/accept", 409, "field 'id'"),
        (json.dumps({"id": rid, "version": "0" * 16}).encode(), "/api/review/1/accept", 409, "changed since"),
        (json.dumps({"id": rid}).encode(), "/api/review/9/accept", 404, "records are 1..5"),
        (json.dumps({"id": rid}).encode(), "/api/review/1/approve", 404, "no action 'approve'"),
        (json.dumps({"id": rid}).encode(), "/api/review/1/accept?status=maybe", 400, "'status'"),
    ]
    for body, target, status, words in cases:
        got_status, message = post(body, target)
        assert (got_status, words in message) == (status, True), (target, body, got_status, message)
    assert app.dispatch("GET", "/review/0", b"").status == 404
    assert path.read_bytes() == before and _audit(store) == []  # nothing refused was written
    body = json.dumps({"id": rid, "version": record_version(read_records(path)[0])}).encode()
    assert app.dispatch("POST", "/api/review/1/accept", body).status == 200
    with pytest.raises(ReviewError, match="--reviewer"):
        ReviewStore(path, "  ")
    with pytest.raises(ReviewError, match="--reviewer"):
        ReviewStore(path, "bad\nname")


def test_two_review_servers_on_one_file_lose_no_decision(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path, 40)
    ids = [r.id for r in records if r.raw is None]
    stores = [ReviewStore(path, "ana"), ReviewStore(path, "ben")]  # two processes' views: separate flock descriptions
    errors: list[BaseException] = []

    def work(store: ReviewStore, mine: list[str]) -> None:
        try:
            for rid in mine:
                store.accept(rid) if hash(rid) % 2 else store.reject(rid)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(stores[i % 2], ids[i::4])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    final = {r.id: r.review for r in read_records(path)}
    assert all(final[rid].status == ("accepted" if hash(rid) % 2 else "rejected") for rid in ids)
    assert {final[rid].reviewer for rid in ids} == {"ana", "ben"}
    assert sorted(e["id"] for e in _audit(stores[0])) == sorted(ids)
    # a decision taken on a page loaded before the other reviewer's change is refused
    target = ids[0]
    stale = record_version(next(r for r in stores[1].records() if r.id == target))
    stores[0].reopen(target)
    with pytest.raises(ReviewError, match="changed since") as err:
        stores[1].accept(target, stale)
    assert err.value.status == 409


def test_draft_appends_and_review_edits_on_one_file_lose_nothing(tmp_path: Path) -> None:
    """draft-coe appending while a review server rewrites the file: both take `<file>.lock` (issue #12)."""
    from empathy_rl.drafting import append_draft

    path = tmp_path / "drafts.jsonl"
    existing = _drafts(path, 30)
    extra = [dataclasses.replace(r, id=f"new-{i:03d}") for i, r in enumerate(read_records(bundled_path())[:60])]
    store = ReviewStore(path, "ana")
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=30)

    def draft() -> None:
        try:
            start.wait()
            for rec in extra:
                append_draft(path, rec, lock_timeout_s=30)
        except BaseException as err:  # surfaced below
            errors.append(err)

    def review() -> None:
        try:
            start.wait()
            for rec in existing:
                store.edit(rec.id, {"notes": f"checked {rec.id}"})
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=draft), threading.Thread(target=review)]  # separate flock descriptions, as two processes
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    final = {r.id: r for r in read_records(path)}
    assert set(final) == {r.id for r in existing} | {r.id for r in extra}  # no appended line lost
    assert all(final[r.id].review.notes == f"checked {r.id}" for r in existing)  # no decision lost
    assert len(_audit(store)) == len(existing)


def test_serve_until_interrupted_prints_the_bound_url_and_closes_on_ctrl_c(monkeypatch, capsys) -> None:
    """How `review` and `rank serve` run: bound before the banner, Ctrl-C ends it with 0, socket and store closed."""
    import socket

    from empathy_rl.webapp import server as webapp_server

    served: list[webapp_server.Server] = []

    def interrupted(self: webapp_server.Server) -> None:
        served.append(self)
        socket.create_connection(self.httpd.server_address[:2], timeout=10).close()  # already listening
        raise KeyboardInterrupt

    monkeypatch.setattr(webapp_server.Server, "serve_forever", interrupted)
    closed: list[bool] = []
    assert webapp_server.serve_until_interrupted(App(), "127.0.0.1", 0, lambda url: f"open {url}/", lambda: closed.append(True)) == 0
    assert capsys.readouterr().out == f"open {served[0].url}/\n"
    assert served[0].httpd.socket.fileno() == -1 and closed == [True]


def test_shared_server_refuses_other_origins_and_hosts(tmp_path: Path) -> None:
    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "ana")
    server = Server(add_review_pages(App(), store), "127.0.0.1", 0).start()
    body = json.dumps({"id": records[0].id}).encode()

    def call(headers: dict[str, str]) -> int:
        req = urllib.request.Request(server.url + "/api/review/1/reject", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status
        except urllib.error.HTTPError as err:
            return err.code

    try:
        assert call({"Origin": "http://evil.example"}) == 403
        assert call({"Host": "evil.example:80"}) == 403  # a DNS-rebinding page sends its own host name
        assert read_records(path)[0].review.status == "draft"
        assert call({"Origin": server.url}) == 200
    finally:
        server.stop()
    assert read_records(path)[0].review.status == "rejected"


def test_cli_checks_reviewer_and_host(tmp_path: Path, capsys) -> None:
    from empathy_rl.cli import main

    path = tmp_path / "drafts.jsonl"
    _drafts(path)
    with pytest.raises(SystemExit):
        main(["review", "--input", str(path)])  # --reviewer is required
    assert "--reviewer" in capsys.readouterr().err
    assert main(["review", "--input", str(path), "--reviewer", "ana", "--host", "0.0.0.0"]) == 2
    assert "review.host='0.0.0.0' is not loopback" in capsys.readouterr().err
    assert main(["review", "--input", str(tmp_path / "none.jsonl"), "--reviewer", "ana"]) == 2
    assert "no such CoE data file" in capsys.readouterr().err


@pytest.mark.slow
def test_review_page_by_keyboard_in_headless_chromium(tmp_path: Path, chromium_browser, page_wait) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    path = tmp_path / "drafts.jsonl"
    records = _drafts(path)
    store = ReviewStore(path, "Ana Reviewer")
    server = Server(add_review_pages(App(), store), "127.0.0.1", 0).start()
    browser = chromium_browser
    wait = page_wait(browser, 20)
    keys = lambda *k: ActionChains(browser).send_keys(*k).perform()  # to whatever has focus: keyboard only
    at = lambda n: wait.until(ec.text_to_be_present_in_element((By.ID, "position"), str(n)))
    added = " Also afraid of disappointing the team."
    try:
        browser.get(server.url + "/")
        at(1)
        assert "0 / 5 reviewed" in browser.find_element(By.ID, "progress").text
        assert browser.find_element(By.ID, "reviewer").text == "Ana Reviewer"
        assert browser.find_element(By.ID, "help").is_displayed()
        keys("a")  # accept record 1 -> record 2
        at(2)
        wait.until(ec.text_to_be_present_in_element((By.ID, "progress"), "1 / 5 reviewed"))
        keys("e")  # edit: the cursor goes to the end of L1 ... Tab to L2, type, save, leave the field, accept
        assert browser.switch_to.active_element.get_attribute("id") == "field-L1"
        keys(Keys.TAB, Keys.END, added)
        ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Saved (L2, provenance.source)"))
        assert browser.find_element(By.ID, "source").text == "edited"
        keys("a")
        at(3)  # the draft that never parsed: raw teacher output shown; accepting is refused with a message
        assert browser.find_element(By.ID, "raw").is_displayed() and "<L1>" in browser.find_element(By.ID, "raw").text
        assert browser.find_element(By.ID, "incomplete").is_displayed()
        keys("a")
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "cannot be accepted: layer L1 is empty"))
        keys("r")  # reject it -> record 4
        at(4)
        browser.refresh()  # reload: still at the next draft, progress kept
        at(4)
        assert "3 / 5 reviewed" in browser.find_element(By.ID, "progress").text
        browser.get(server.url + "/review")  # opening the page anew resumes at the first draft
        at(4)
        keys("k")  # under the draft filter there is no earlier draft
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "first record"))
    finally:
        server.stop()
    saved = read_records(path)
    assert [r.review.status for r in saved] == ["accepted", "accepted", "rejected", "draft", "draft"]
    assert saved[1].layers[1] == records[1].layers[1] + added and saved[1].provenance.source == "edited"
    assert saved[1].provenance.model == "teacher-x" and saved[0].provenance.source == "drafted"
    assert {r.review.reviewer for r in saved[:3]} == {"Ana Reviewer"}
    log = _audit(store)
    assert [(e["action"], e["id"]) for e in log] == [
        ("accept", records[0].id), ("edit", records[1].id), ("accept", records[1].id), ("reject", records[2].id)]
    assert log[1]["changes"]["L2"] == {"old": records[1].layers[1], "new": records[1].layers[1] + added}
    assert [r.id for r in accepted_records([path])] == [records[0].id, records[1].id]
