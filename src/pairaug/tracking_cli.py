"""`pairaug ui` (the MLflow UI on the repository's store, opened on the runs table) and
`pairaug model list | alias set | alias delete` (the registry of pretrained models)."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from pairaug.errors import InputError
from pairaug.io import repo_root
from pairaug.tracking import (
    _display,
    load_config,
    model_versions,
    runs_url,
    runs_view,
    set_alias,
    tracking_uri,
)


def _free_port(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _cmd_ui(args: argparse.Namespace) -> None:
    root = repo_root()
    cfg = load_config(root / "params.yaml")
    uri = tracking_uri(root)
    if uri.startswith(("http://", "https://")):  # a team server: nothing to start, just the link
        exp_id, key = runs_view(cfg, root)
        print(runs_url(_display(uri), exp_id, key), flush=True)
        return
    exp_id, key = runs_view(cfg, root)  # creates the store and experiment if this is the first use
    if not _free_port(args.host, args.port):
        raise InputError(f"port {args.port} on {args.host} is in use (choose another with --port)")
    base = f"http://{args.host}:{args.port}"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=root)

    def stop(signum, frame):  # `kill` (SIGTERM) stops the UI as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if not _wait_ready(base, proc, args.wait):
            raise InputError(f"mlflow ui did not start on {base} within {args.wait:.0f} s (exit code {proc.poll()})")
        print(f"MLflow UI on {base} (store {uri}); the runs of experiment {cfg.experiment!r}, key metrics as columns:",
              flush=True)
        print(runs_url(base, exp_id, key), flush=True)
        print("Ctrl-C stops it.", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()  # mlflow ui stops its uvicorn workers on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cmd_model_list(args: argparse.Namespace) -> None:
    rows = model_versions(load_config(repo_root() / "params.yaml"))
    cols = ("version", "mix", "seed", "aliases", "run_id", "git_commit")
    widths = {c: max([len(c), *[len(str(r[c])) for r in rows]]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


def _cmd_alias_set(args: argparse.Namespace) -> None:
    if (args.version is None) == (args.mix is None):
        raise InputError("give either a VERSION or --mix MIX (the mix's latest version)")
    cfg = load_config(repo_root() / "params.yaml")
    version = set_alias(cfg, args.alias, args.version, args.mix, args.seed)
    print(f"{cfg.registered_model}@{args.alias} -> version {version}")


def _cmd_alias_delete(args: argparse.Namespace) -> None:
    from pairaug.tracking import delete_alias

    cfg = load_config(repo_root() / "params.yaml")
    delete_alias(cfg, args.alias)
    print(f"deleted {cfg.registered_model}@{args.alias}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the MLflow UI on the repository's runs and print the runs-table link",
                       description="Start `mlflow ui` on 127.0.0.1 against the repository's store "
                                   "($MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db) and print the direct "
                                   "link to the runs table with the mixes' key metrics as columns. With a "
                                   "tracking server in $MLFLOW_TRACKING_URI, only print the link.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server to answer")
    p.set_defaults(func=_cmd_ui)

    m = sub.add_parser("model", help="the registered pretrained models: list versions, set or delete aliases")
    msub = m.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="versions with their mix, seed, aliases and run")
    ls.set_defaults(func=_cmd_model_list)
    a = msub.add_parser("alias", help="set or delete an alias (e.g. champion) of a model version")
    asub = a.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    s = asub.add_parser("set", help="point ALIAS at VERSION, or at the latest version of --mix [--seed]")
    s.add_argument("alias")
    s.add_argument("version", nargs="?")
    s.add_argument("--mix")
    s.add_argument("--seed", type=int)
    s.set_defaults(func=_cmd_alias_set)
    d = asub.add_parser("delete", help="remove ALIAS")
    d.add_argument("alias")
    d.set_defaults(func=_cmd_alias_delete)
