"""The `pairaug review` command: serve the review app on a loopback address (another only when told to)."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
from pathlib import Path

from pairaug.errors import InputError
from pairaug.net import is_loopback
from pairaug.paths import repo_root

_DESCRIPTION = ("Page through the synthetic pairs of the workspace (source film and report beside the synthetic "
                "pair, scores, prune's decision, per-pair facts) and record accept / reject / flag in "
                "review/decisions.csv; `dvc repro` then reruns prune onward with them.")


def check_bind(host: str, allow_external: bool) -> None:
    """Refuse a non-loopback address unless `--allow-external`: the pages show patient films and reports."""
    if not allow_external and not is_loopback(host):
        raise InputError(f"refusing to serve the review app on {host}: it is not a loopback address and the pages "
                         "show patient films and reports; pass --allow-external if this network may see them")


def _reviewer(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without a passwd entry
        return os.environ.get("USER") or "reviewer"


def _cmd_review(args: argparse.Namespace) -> None:
    check_bind(args.host, args.allow_external)
    import uvicorn

    from pairaug.review.app import create_app
    from pairaug.review.workspace import Workspace

    root = Path(args.root).resolve() if args.root else repo_root()
    ws = Workspace(root)
    ws.decisions()  # a broken decisions file is reported now, not on the first page
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:
        if s.connect_ex((args.host, args.port)) == 0:
            raise InputError(f"port {args.port} on {args.host} is in use (choose another with --port)")
    hosts = None if args.allow_external else ["127.0.0.1", "localhost", "::1", "[::1]", args.host]
    app = create_app(ws, _reviewer(args.reviewer), args.per_page, hosts)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pairaug review: {len(ws.cands)} candidates of {root}; decisions go to {ws.decisions_path}", flush=True)
    print(f"http://{host}:{args.port}/pairs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review synthetic pairs in the browser; decisions feed the next prune",
                       description=_DESCRIPTION)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only, unless --allow-external)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--allow-external", action="store_true",
                   help="allow a non-loopback --host (the pages show patient data to whoever reaches it)")
    p.add_argument("--reviewer", help="the name recorded with each decision (default: your user name)")
    p.add_argument("--per-page", type=int, default=50, help="pairs per page (default 50)")
    p.add_argument("--root", help="the workspace (default: the repository root)")
    p.set_defaults(func=_cmd_review)
