"""The ranking pages, registered on a `webapp.server.App`.

    GET  /                              rater name form
    GET  /rank?rater=NAME               resume: the rater's first unranked case
    GET  /rank/{rater}/{index}          one case (1-based index): the seeker's text and N answers
    POST /api/rank/{rater}/{index}      {"ranks": [rank of answer 1, 2, ...]} -> {"next", "done", "total"}
    GET  /api/progress/{rater}          {"done", "total"}

Keyboard: Up/Down (or j/k) move between answers, a digit gives the selected answer that rank
(and moves on), 0/Backspace clears it, Enter submits, Left/Right go to the previous/next case.
Rankings are saved per (rater, case) in SQLite at once, so closing the tab loses nothing.
"""

from __future__ import annotations

import html
import json
from typing import Sequence
from urllib.parse import quote

from empathy_rl.ranking.sets import Case
from empathy_rl.ranking.store import RankingStore, RankingStoreError, check_ranks, check_rater
from empathy_rl.webapp.server import App, HTTPError, Request, Response

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.45}
.query{background:#f4f4f4;padding:.8rem;border-radius:6px;white-space:pre-wrap}
.answer{border:2px solid #ddd;border-radius:6px;padding:.6rem .8rem;margin:.6rem 0;display:flex;gap:.8rem;cursor:pointer}
.answer.selected{border-color:#2563eb}
.rank{font-size:1.6rem;font-weight:bold;min-width:2.2rem;text-align:center;color:#2563eb}
.text{white-space:pre-wrap;flex:1}
.help{color:#555;font-size:.9rem}
#status{font-weight:bold}
"""

_SCRIPT = """
const data = JSON.parse(document.getElementById('case-data').textContent);
const n = data.n; let ranks = data.ranks ? data.ranks.slice() : Array(n).fill(0); let sel = 0;
function draw() {
  for (let i = 0; i < n; i++) {
    const el = document.getElementById('answer-' + (i + 1));
    el.classList.toggle('selected', i === sel);
    el.querySelector('.rank').textContent = ranks[i] ? ranks[i] : '–';
    el.dataset.rank = ranks[i] || '';
  }
}
function setRank(i, r) {
  for (let j = 0; j < n; j++) if (ranks[j] === r) ranks[j] = 0;
  ranks[i] = r; if (sel < n - 1) sel++; draw();
}
async function submit() {
  if (ranks.some(r => !r)) { status('Give every answer a rank (1 = best) first.'); return; }
  const res = await fetch(data.post, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({ranks: ranks})});
  const body = await res.json();
  if (!res.ok) { status(body.error || 'not saved'); return; }
  window.location.href = body.next;
}
function status(t) { document.getElementById('status').textContent = t; }
document.addEventListener('keydown', e => {
  if (e.key === 'ArrowDown' || e.key === 'j') { sel = Math.min(n - 1, sel + 1); draw(); e.preventDefault(); }
  else if (e.key === 'ArrowUp' || e.key === 'k') { sel = Math.max(0, sel - 1); draw(); e.preventDefault(); }
  else if (e.key === 'ArrowLeft' && data.prev) { window.location.href = data.prev; }
  else if (e.key === 'ArrowRight' && data.next) { window.location.href = data.next; }
  else if (e.key === 'Enter') { submit(); e.preventDefault(); }
  else if (e.key === '0' || e.key === 'Backspace') { ranks[sel] = 0; draw(); e.preventDefault(); }
  else if (/^[1-9]$/.test(e.key) && +e.key <= n) { setRank(sel, +e.key); e.preventDefault(); }
});
for (let i = 0; i < n; i++) document.getElementById('answer-' + (i + 1)).addEventListener('click', () => { sel = i; draw(); });
document.getElementById('submit').addEventListener('click', submit);
draw();
"""


def _page(title: str, body: str, script: str = "") -> Response:
    return Response.html(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}{f'<script>{script}</script>' if script else ''}</body></html>"
    )


def _json_for_script(data: object) -> str:
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def add_ranking_pages(app: App, cases: Sequence[Case], store: RankingStore) -> App:
    """Register the ranking routes for `cases` (shown in this order to every rater) on `app`."""
    total = len(cases)

    def rater_of(request: Request) -> str:
        try:
            return check_rater(request.params.get("rater") or request.query.get("rater", ""))
        except RankingStoreError as err:
            raise HTTPError(400, str(err)) from err

    def index_of(request: Request) -> int:
        raw = request.params["index"]
        if not raw.isdigit() or not 1 <= int(raw) <= total:
            raise HTTPError(404, f"case {raw!r} does not exist; cases are 1..{total}")
        return int(raw)

    def case_url(rater: str, index: int) -> str:
        return f"/rank/{quote(rater)}/{index}"

    def first_open(rater: str) -> str:
        done = store.done(rater)
        for i, case in enumerate(cases, 1):
            if case.case_id not in done:
                return case_url(rater, i)
        return f"/rank/{quote(rater)}/done"

    @app.route("GET", "/")
    def home(request: Request) -> Response:
        return _page("Rank answers", (
            "<h1>Rank the answers</h1><p>For each help-seeker's text, rank the answers from best (1) to worst. "
            "The systems are hidden and shuffled. Your rankings are saved as you go; come back with the same name to resume.</p>"
            "<form action='/rank' method='get'><label>Your rater name <input id='rater' name='rater' autofocus "
            "pattern='[A-Za-z0-9_.\\-]{1,40}' required></label> <button id='start'>Start</button></form>"
        ))

    @app.route("GET", "/rank")
    def resume(request: Request) -> Response:
        return Response.redirect(first_open(rater_of(request)))

    @app.route("GET", "/rank/{rater}/done")
    def finished(request: Request) -> Response:
        rater = rater_of(request)
        done = len(store.done(rater) & {c.case_id for c in cases})
        return _page("Done", f"<h1>Thank you</h1><p id='progress'>{done} / {total} ranked.</p>"
                     f"<p><a id='review' href='{case_url(rater, 1)}'>Review from the first case</a></p>")

    @app.route("GET", "/rank/{rater}/{index}")
    def show(request: Request) -> Response:
        rater, index = rater_of(request), index_of(request)
        case = cases[index - 1]
        done = len(store.done(rater) & {c.case_id for c in cases})
        saved = store.get(rater, case.case_id)
        data = {"n": len(case.answers), "ranks": saved, "post": f"/api/rank/{quote(rater)}/{index}",
                "prev": case_url(rater, index - 1) if index > 1 else None,
                "next": case_url(rater, index + 1) if index < total else None}
        answers = "".join(
            f"<div class='answer' id='answer-{i}' data-position='{i}'><div class='rank'>–</div>"
            f"<div class='text'>{html.escape(text)}</div></div>"
            for i, text in enumerate(case.answers, 1)
        )
        flag = " <strong>(crisis)</strong>" if case.crisis else ""
        body = (
            f"<p><span id='progress'>{done} / {total} ranked</span> · case <span id='case-index'>{index}</span> of {total}"
            f" · rater <b>{html.escape(rater)}</b>{' · <span id=saved>saved</span>' if saved else ''}</p>"
            f"<h2>Help-seeker ({html.escape(case.language)}){flag}</h2><div class='query'>{html.escape(case.query)}</div>"
            f"<h2>Answers</h2>{answers}"
            "<p><button id='submit'>Save and next (Enter)</button> <span id='status'></span></p>"
            "<p class='help'>↑/↓ choose an answer · 1–9 give it that rank (1 = best) · 0 clear · Enter save · ←/→ previous/next case</p>"
            f"<script type='application/json' id='case-data'>{_json_for_script(data)}</script>"
        )
        return _page(f"Case {index} of {total}", body, _SCRIPT)

    @app.route("POST", "/api/rank/{rater}/{index}")
    def save(request: Request) -> Response:
        rater, index = rater_of(request), index_of(request)
        case = cases[index - 1]
        payload = request.json()
        try:
            ranks = check_ranks(payload.get("ranks") if isinstance(payload, dict) else None, len(case.answers))
        except RankingStoreError as err:
            raise HTTPError(422, str(err)) from err
        store.save(rater, case.case_id, ranks)
        done = len(store.done(rater) & {c.case_id for c in cases})
        return Response.json({"next": first_open(rater), "done": done, "total": total})

    @app.route("GET", "/api/progress/{rater}")
    def progress(request: Request) -> Response:
        rater = rater_of(request)
        return Response.json({"done": len(store.done(rater) & {c.case_id for c in cases}), "total": total})

    return app
