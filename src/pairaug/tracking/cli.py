"""The tracking commands: `pairaug audit` (which synthetic pairs trained a model, verified), `pairaug ui`
(the MLflow UI on the repository's store, opened on the runs table) and `pairaug model list | alias set |
alias delete` (the registry of pretrained models). The logic lives in the package's other modules."""

from __future__ import annotations

import argparse
import csv
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd

from pairaug.errors import InputError
from pairaug.io import atomic_path
from pairaug.paths import repo_root
from pairaug.tracking import audit as auditing
from pairaug.tracking.registry import delete_alias, model_versions, set_alias
from pairaug.tracking.store import display_uri, load_config, tracking_uri
from pairaug.tracking.ui import VIEW_NAME, prompts_url, runs_url, runs_view

# ---------------------------------------------------------------------------------------------- audit

TABLE_COLUMNS = ("pair_id", "branch", "source_pair_id", "image", "image_sha256", "s_a", "s1", "s2", "s3", "review",
                 "review_now", "provenance", "status")


def render(df: pd.DataFrame, fmt: str, header: dict | None = None, table_columns: tuple[str, ...] | None = None,
           list_key: str = "pairs") -> str:
    if fmt == "json":
        records = json.loads(df.to_json(orient="records"))
        return json.dumps({**(header or {}), list_key: records} if header is not None else records, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        df.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL)
        return buf.getvalue()
    cols = [c for c in (table_columns or df.columns) if c in df.columns]
    view = df[cols].copy()
    for c in cols:
        if c == "image_sha256":
            view[c] = view[c].map(lambda v: "" if pd.isna(v) else str(v)[:12])
        elif view[c].dtype.kind == "f":
            view[c] = view[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        else:
            view[c] = view[c].map(lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))
    widths = {c: max([len(c), *[len(v) for v in view[c]]]) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(str(v).ljust(widths[c]) for c, v in zip(cols, row)) for row in view.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _cmd_audit(args: argparse.Namespace) -> None:
    root = repo_root()
    cfg = load_config(root / "params.yaml")
    out = sys.stdout
    if args.pair:
        usage = auditing.pair_usage(args.pair, cfg, root)
        origin = auditing.pair_origin(args.pair, root)
        text = render(usage, args.format, {"pair_id": args.pair, "origin": origin} if args.format == "json" else None,
                      list_key="used_by")
        if args.format == "table":
            if origin:
                out.write(f"pair {args.pair}: {origin.get('branch')} from source pair {origin.get('source_pair_id')}, "
                          f"image {origin.get('image')}, kept={origin.get('kept')}, review={origin.get('review') or '-'}\n")
            out.write(f"used by {len(usage)} run(s) / model folder(s):\n")
        _write(text, args.output)
        return
    if not args.target:
        raise InputError("give a model to audit (run id, registered version or alias, model folder) or --pair ID")
    a = auditing.audit(args.target, cfg, root)
    if args.format == "table":
        h = a.header()
        what = ", ".join(f"{k} {v}" for k, v in (("mix", a.mix), ("seed", a.seed), ("run", a.run_id),
                                                 ("model", a.model_version)) if v)
        print(f"{a.kind} {a.target}: {what}", file=out)
        for path, md5 in h["inputs"].items():
            print(f"  input {path}  md5 {md5}", file=out)
        rev = a.revision
        print(f"  revision: {rev.get('revision') or '-'} ({rev.get('source')})", file=out)
        if rev.get("reproduce"):
            print(f"  reproduce: {rev['reproduce']}", file=out)
        print(f"  {len(a.pairs)} synthetic pairs, {len(a.pairs) - a.failures} verified, {a.failures} not", file=out)
    text = render(a.pairs, args.format, a.header() if args.format == "json" else None, TABLE_COLUMNS)
    _write(text, args.output)
    if a.failures:
        bad = a.pairs[a.pairs["status"] != auditing.STATUS_OK]
        print(f"audit: {a.failures} of {len(a.pairs)} pairs not verified: "
              + ", ".join(f"{p} ({s})" for p, s in zip(bad["pair_id"][:5], bad["status"][:5]))
              + (" ..." if a.failures > 5 else ""), file=sys.stderr)
        raise SystemExit(1)


def _write(text: str, output: str | None) -> None:
    if output:
        with atomic_path(output) as tmp:  # a failed write leaves the previous report whole
            tmp.write_text(text)
    else:
        sys.stdout.write(text)


# ------------------------------------------------------------------------------------- ui, model


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
        exp_id = runs_view(cfg, root)
        print(runs_url(display_uri(uri), exp_id), flush=True)
        return
    exp_id = runs_view(cfg, root)  # creates the store and experiment if this is the first use
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
        print(f"MLflow UI on {base} (store {uri}); the runs of experiment {cfg.experiment!r}:", flush=True)
        print(runs_url(base, exp_id), flush=True)
        print(f"Views > {VIEW_NAME!r} shows the key metrics as columns; the rewrite prompts: {prompts_url(base)}",
              flush=True)
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
    cfg = load_config(repo_root() / "params.yaml")
    delete_alias(cfg, args.alias)
    print(f"deleted {cfg.registered_model}@{args.alias}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="list the synthetic pairs that trained a model and verify their images",
                       description=auditing.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="run id | runs:/<id> | models:/pairaug-vlp/<version> | @<alias> | "
                                             "models/vlp/<mix>[/seed-<s>]")
    p.add_argument("--pair", metavar="ID", help="reverse lookup: the runs and models that used this pair")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_audit)

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
