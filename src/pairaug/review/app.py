"""The `pairaug review` web app: Starlette routes, Jinja2 pages rendered on the server, a few lines of
JavaScript for the keyboard and zoom. Verdicts are POSTed as JSON and written to review/decisions.csv at once.

Starlette rather than FastAPI: the app is a handful of HTML routes and one JSON endpoint, so FastAPI's
request models and OpenAPI schema would add nothing but a layer (FastAPI is Starlette underneath);
Flask would bring a second server stack beside uvicorn.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pairaug.data.adapters import under_root
from pairaug.data.decisions import VERDICTS
from pairaug.data.schema import LABELS
from pairaug.errors import InputError
from pairaug.review.workspace import SCORES, Filters, Workspace

HERE = Path(__file__).parent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_PER_PAGE = 200


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _int(value: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return min(max(int(value or default), lo), hi)
    except ValueError:
        return default


def create_app(ws: Workspace, reviewer: str, per_page: int = 50, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app over one workspace; `allowed_hosts`: the Host headers it answers (DNS rebinding guard)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    lock = threading.Lock()  # one writer at a time: each verdict rewrites the whole (small) file

    def pairs(request: Request) -> Response:
        q = request.query_params
        f = Filters(branch=q.get("branch", ""), status=q.get("status", ""), decision=q.get("decision", ""),
                    label=q.get("label", ""), score=q.get("score", "s_a") or "s_a",
                    min_score=_float(q.get("min")), max_score=_float(q.get("max")))
        size = _int(q.get("per_page"), per_page, 1, MAX_PER_PAGE)
        cards, total = ws.page(f, _int(q.get("page"), 1, 1, 10**9), size)
        page = _int(q.get("page"), 1, 1, max(1, -(-total // size)))
        query = {k: v for k, v in q.items() if k != "page" and v}

        def link(n: int) -> str:
            return "/pairs?" + urlencode({**query, "page": n})

        return templates.TemplateResponse(request, "pairs.html", {
            "cards": cards, "total": total, "page": page, "pages": max(1, -(-total // size)), "filters": f,
            "query": query, "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page * size < total else None, "branches": ws.branches, "labels": LABELS,
            "scores": SCORES, "verdicts": VERDICTS, "reviewer": reviewer, "per_page": size,
            "decisions_file": _shown(ws.decisions_path, ws.root)})

    def summary(request: Request) -> Response:
        return templates.TemplateResponse(request, "summary.html", {
            "summary": ws.summary(), "reviewer": reviewer, "decisions_file": _shown(ws.decisions_path, ws.root)})

    async def decide(request: Request) -> Response:
        # JSON only: a page of another site cannot send that without a CORS preflight this app never grants.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON"}, status_code=415)
        try:
            body: dict[str, Any] = await request.json()
        except ValueError:
            return JSONResponse({"error": "not valid JSON"}, status_code=400)
        decision = body.get("decision")
        if decision not in (*VERDICTS, None):
            return JSONResponse({"error": f"decision must be one of {', '.join(VERDICTS)} or null"}, status_code=400)
        try:
            with lock:
                row = ws.decide(str(body.get("pair_id", "")), decision, reviewer, str(body.get("note") or ""))
        except InputError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"pair_id": body.get("pair_id"), "decision": row})

    def image(request: Request) -> Response:
        rel = request.path_params["path"]
        try:  # the path as written must stay inside the workspace (no absolute path, no `..` out of it)
            path, _ = under_root(ws.root, rel, file=Path("<request>"), row=None, field="path")
        except InputError as e:
            return PlainTextResponse(str(e), status_code=403)
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            return PlainTextResponse("not an image of this workspace", status_code=404)
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    routes = [
        Route("/", lambda request: RedirectResponse("/pairs")),
        Route("/pairs", pairs),
        Route("/summary", summary),
        Route("/api/decision", decide, methods=["POST"]),
        Route("/image/{path:path}", image),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


def _shown(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:
        return str(path)
