"""The review pages for drafted CoE examples, registered on a `webapp.server.App`.

    GET  /                                  -> /review (when no other page owns "/")
    GET  /review?status=draft               resume: the first record with that status (default: the first draft)
    GET  /review/{n}?status=S               record n (1-based, file order); j/k move among records with status S
    GET  /review/done?status=S              nothing left with status S: counts and links
    POST /api/review/{n}/{action}           action accept|reject|edit|reopen; body {"id", "version", "fields"?}
                                            -> {"status", "changed", "version", "incomplete", "next", "progress"}
    GET  /api/review/progress               {"draft", "accepted", "rejected", "total", "reviewed"}

The HTML, CSS and JS are files next to this module (review.html, review_done.html, review.css,
review.js); this module fills them with escaped values. Keyboard: a accept, r reject, o back to
draft, e edit, Ctrl+Enter save, j/k or arrows next/previous, g go to a number, f filter.
"""

from __future__ import annotations

import html
from typing import Optional

from empathy_rl.coe import LAYER_NAMES
from empathy_rl.coe_data import LAYER_KEYS, STATUSES, CoERecord
from empathy_rl.review.store import ACTIONS, ReviewError, ReviewStore, incomplete_reason, record_version
from empathy_rl.webapp.server import App, HTTPError, Request, Response
from empathy_rl.webapp.templates import asset_text, json_for_script, render

FILTERS = (*STATUSES, "all")
_PACKAGE = "empathy_rl.review"


def _matches(record: CoERecord, status: str) -> bool:
    return status == "all" or record.review.status == status


def _page_url(position: int, status: str) -> str:
    return f"/review/{position + 1}?status={status}"


def _after(records: list[CoERecord], position: int, status: str) -> Optional[int]:
    """The next record with `status` after `position`, wrapping to the start (skipped ones come back)."""
    order = [*range(position + 1, len(records)), *range(0, position)]
    return next((i for i in order if _matches(records[i], status)), None)


def add_review_pages(app: App, store: ReviewStore) -> App:
    """Register the review routes for the records of `store` on `app`."""

    def status_of(request: Request) -> str:
        status = request.query.get("status", "draft")
        if status not in FILTERS:
            raise HTTPError(400, f"query parameter 'status' must be one of {list(FILTERS)}, got {status!r}")
        return status

    def position_of(request: Request, total: int) -> int:
        raw = request.params["n"]
        if not raw.isdigit() or not 1 <= int(raw) <= total:
            raise HTTPError(404, f"record {raw!r} does not exist; records are 1..{total}")
        return int(raw) - 1

    def done_url(status: str) -> str:
        return f"/review/done?status={status}"

    def common(counts: dict[str, int]) -> dict[str, str]:
        return {"style": asset_text(_PACKAGE, "review.css"), "reviewer": html.escape(store.reviewer),
                "reviewed": str(counts["reviewed"]), "total": str(counts["total"]), "accepted": str(counts["accepted"]),
                "rejected": str(counts["rejected"]), "drafts": str(counts["draft"])}

    if not app.has_route("GET", "/"):
        @app.route("GET", "/")
        def home(request: Request) -> Response:
            return Response.redirect("/review")

    @app.route("GET", "/review")
    def resume(request: Request) -> Response:
        status = status_of(request)
        records = store.records()
        first = next((i for i, r in enumerate(records) if _matches(r, status)), None)
        return Response.redirect(done_url(status) if first is None else _page_url(first, status))

    @app.route("GET", "/review/done")
    def done(request: Request) -> Response:
        status = status_of(request)
        label = {"draft": "draft", "all": ""}.get(status, status)
        return Response.html(render(_PACKAGE, "review_done.html", **common(store.counts()), filter_label=label,
                                    path=html.escape(str(store.path))))

    @app.route("GET", "/review/{n}")
    def show(request: Request) -> Response:
        status = status_of(request)
        records = store.records()
        position = position_of(request, len(records))
        rec = records[position]
        prev = next((i for i in range(position - 1, -1, -1) if _matches(records[i], status)), None)
        nxt = next((i for i in range(position + 1, len(records)) if _matches(records[i], status)), None)
        reason = incomplete_reason(rec)
        data = {"id": rec.id, "version": record_version(rec), "filter": status, "total": len(records),
                "api": f"/api/review/{position + 1}",
                "prev": None if prev is None else _page_url(prev, status),
                "next": None if nxt is None else _page_url(nxt, status)}
        p, r = rec.provenance, rec.review
        values = {
            **common(store.counts()),
            "record_id": html.escape(rec.id), "position": str(position + 1), "status": r.status,
            "prev_url": html.escape(data["prev"] or "#"), "next_url": html.escape(data["next"] or "#"),
            "language": html.escape(rec.language), "topic": html.escape(rec.topic or "none"),
            "crisis": "<strong>crisis</strong>" if rec.crisis else "not crisis",
            "source": html.escape(p.source), "model": html.escape(p.model or "none"),
            "created_at": html.escape(p.created_at or "unknown"),
            "reviewed_by": html.escape(f"{r.reviewer} at {r.reviewed_at}" if r.reviewer else "none"),
            "incomplete_hidden": "" if reason else "hidden", "incomplete": html.escape(reason or ""),
            "query": html.escape(rec.query),
            "raw_hidden": "" if rec.raw is not None else "hidden", "raw": html.escape(rec.raw or ""),
            "parse_error": html.escape(rec.parse_error or "no error recorded"),
            "answer": html.escape(rec.answer), "notes": html.escape(r.notes),
            "data": json_for_script(data), "script": asset_text(_PACKAGE, "review.js"),
        }
        for key, text in zip(LAYER_KEYS, rec.layers):
            values[key] = html.escape(text)
            values[f"{key}_name"] = html.escape(LAYER_NAMES[key])
        return Response.html(render(_PACKAGE, "review.html", **values))

    @app.route("POST", "/api/review/{n}/{action}")
    def decide(request: Request) -> Response:
        action = request.params["action"]
        if action not in ACTIONS:
            raise HTTPError(404, f"no action {action!r}; actions are {list(ACTIONS)}")
        status = status_of(request)
        records = store.records()
        position = position_of(request, len(records))
        payload = request.json()
        if not isinstance(payload, dict):
            raise HTTPError(400, "request body must be a JSON object with fields 'id', 'version' and (to edit) 'fields'")
        unknown = sorted(set(payload) - {"id", "version", "fields"})
        if unknown:
            raise HTTPError(400, f"unknown field(s) {unknown} in the request body; known: ['fields', 'id', 'version']")
        if action != "edit" and "fields" in payload:
            raise HTTPError(400, f"field 'fields' belongs to an edit, not to {action}; save the edits first")
        record_id, version = payload.get("id"), payload.get("version")
        if isinstance(record_id, str) and record_id != records[position].id:
            raise HTTPError(409, f"field 'id': record {position + 1} is {records[position].id!r}, not {record_id!r}; reload the page")
        try:
            if action == "edit":
                result = store.edit(record_id, payload.get("fields"), version)
            else:
                result = getattr(store, action)(record_id, version)
        except ReviewError as err:
            raise HTTPError(err.status, str(err)) from err
        records = store.records()
        if action in ("accept", "reject"):
            nxt = _after(records, position, status)
            result["next"] = done_url(status) if nxt is None else _page_url(nxt, status)
        else:
            result["next"] = _page_url(position, status)
        result["progress"] = store.counts()
        return Response.json(result)

    @app.route("GET", "/api/review/progress")
    def progress(request: Request) -> Response:
        return Response.json(store.counts())

    return app
