"""`pairaug audit`: which synthetic pairs trained a model, are their images still the ones it saw, and
which revision reproduces them; `--pair ID`: which runs and models a pair trained.

A model is named by an MLflow run id (`runs:/<id>` or the bare id), a registered version
(`models:/pairaug-vlp/3`, `pairaug-vlp/3`, `3`) or alias (`models:/pairaug-vlp@champion`, `@champion`),
or a model folder (`models/vlp/<mix>` or one of its `seed-<s>/`). Runs carry their own audit trail
(artifacts `audit/synthetic_pairs.parquet` and `audit/lineage.json`, see pairaug.tracking); a folder
is read against the workspace (its `training_pairs.parquet`, `dvc.lock`, `data/validated`).

Each image is hashed (sha256) in the workspace and, through the DVC outputs recorded in the lineage,
in the DVC cache: `verified` (workspace matches, or the file is absent and the cache matches),
`modified` (the workspace file differs from the hash the pair was trained with), `missing`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pairaug.errors import InputError
from pairaug.io import md5_file, repo_root, sha256_file
from pairaug.tracking import (
    AUDIT_COLUMNS,
    AUDIT_LINEAGE,
    AUDIT_PAIRS,
    REAL_MANIFEST,
    TrackingConfig,
    audit_pairs,
    ensure_experiment,
    git_state,
    load_config,
    lock_dep,
    lock_outs,
    read_lock,
    synthetic_manifest,
    tracking_uri,
    weights_sha256,
)

RUN_ID = re.compile(r"[0-9a-f]{32}")
STATUS_OK = "verified"


@dataclass
class Audit:
    target: str
    kind: str  # run | model version | folder
    mix: str | None
    seed: str | None
    run_id: str | None
    model_version: str | None
    lineage: dict
    pairs: pd.DataFrame
    revision: dict = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return int((self.pairs["status"] != STATUS_OK).sum()) if len(self.pairs) else 0

    def header(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "mix": self.mix, "seed": self.seed, "run_id": self.run_id,
                "model_version": self.model_version, "pairs": len(self.pairs), "not_verified": self.failures,
                "inputs": self.lineage.get("inputs", {}), "revision": self.revision}


# ------------------------------------------------------------------------------------------- targets


def _client():
    from mlflow import MlflowClient

    uri = tracking_uri()
    return MlflowClient(uri, uri)


def parse_model_ref(target: str, default_name: str) -> tuple[str, str | None, str | None] | None:
    """(name, version, alias) for a registered-model reference, else None."""
    ref = target.removeprefix("models:/")
    if m := re.fullmatch(r"(?:([\w.\-]+))?@([\w\-]+)", ref):
        return (m.group(1) or default_name, None, m.group(2))
    if m := re.fullmatch(r"(?:([\w.\-]+)/)?v?(\d+)", ref):
        return (m.group(1) or default_name, m.group(2), None)
    return None


def resolve(target: str, cfg: TrackingConfig, root: Path) -> Audit:
    path = Path(target)
    if path.exists():
        return _from_folder(target, path, root)
    if target.startswith("runs:/") or RUN_ID.fullmatch(target):
        run_id = target.removeprefix("runs:/").split("/")[0]
        return _from_run(target, run_id, cfg, "run", None)
    ref = parse_model_ref(target, cfg.registered_model)
    if ref is None:
        raise InputError(f"cannot read {target!r} as a model folder, run id, registered version or alias "
                         "(e.g. models/vlp/pairaug, runs:/<id>, models:/pairaug-vlp/3, @champion)")
    name, version, alias = ref
    ensure_experiment(cfg)
    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception as e:  # noqa: BLE001 - MlflowException names what is missing
        raise InputError(f"no registered model version {target!r}: {str(e).splitlines()[0]}") from None
    return _from_run(target, mv.run_id, cfg, "model version", f"{name}/{mv.version}")


def _from_run(target: str, run_id: str, cfg: TrackingConfig, kind: str, version: str | None) -> Audit:
    import mlflow

    ensure_experiment(cfg)
    client = _client()
    try:
        run = client.get_run(run_id)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"no MLflow run {run_id!r} at {tracking_uri()}: {str(e).splitlines()[0]}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pairs = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=AUDIT_PAIRS, dst_path=tmp))
            lineage = json.loads(Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=AUDIT_LINEAGE, dst_path=tmp)).read_text())
        except Exception as e:  # noqa: BLE001
            raise InputError(f"run {run_id} has no audit trail ({AUDIT_PAIRS}): was it logged by pretrain? "
                             f"({str(e).splitlines()[0]})") from None
    if version is None:
        version = run.data.tags.get("model_version")
        version = f"{cfg.registered_model}/{version}" if version else None
    return Audit(target, kind, run.data.tags.get("mix"), run.data.tags.get("seed"), run_id, version, lineage, pairs)


def _artifact_paths(client, run_id: str) -> set[str]:
    try:
        return {f.path for f in client.list_artifacts(run_id, "audit")}
    except Exception:  # noqa: BLE001
        return set()


def _from_folder(target: str, path: Path, root: Path) -> Audit:
    path = path.resolve()
    seed = None
    if path.name.startswith("seed-") and (path.parent / "training_pairs.parquet").exists():
        seed, path = path.name.removeprefix("seed-"), path.parent
    if not (path / "training_pairs.parquet").exists():
        raise InputError("not a pretrained mix folder (no training_pairs.parquet)", file=path)
    mix = path.name
    lock = read_lock(root)
    manifest = synthetic_manifest(mix)
    inputs = {p: m for p in (REAL_MANIFEST, manifest) if (m := lock_dep(lock, f"pretrain@{mix}", p))}
    training = pd.read_parquet(path / "training_pairs.parquet")
    validated = None
    syn = root / manifest
    if syn.exists() and (manifest not in inputs or md5_file(syn) == inputs[manifest]):
        validated = pd.read_parquet(syn)
    commit, dirty = git_state(root)
    seeds = sorted(path.glob("seed-*"))
    lineage = {"mix": mix, "inputs": inputs, "git_commit": commit or "", "git_dirty": str(dirty).lower(),
               "dvc_outs": {p: m for p, m in lock_outs(lock).items() if p.startswith("data/")},
               "weights_sha256": {s.name: weights_sha256(s) for s in seeds}}
    return Audit(target, "folder", mix, seed, None, None, lineage, audit_pairs(training, validated))


# ------------------------------------------------------------------------------------------- hashes


def _cache_dir(root: Path) -> Path:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Path(repo.cache.local.path)


def _cache_object(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


class CacheIndex:
    """Files of DVC folder outputs (their `.dir` listings in the cache): path → cached object."""

    def __init__(self, root: Path, outs: dict[str, str]):
        self.root, self.outs = root, outs
        self.cache = _cache_dir(root) if outs else None
        self._listings: dict[str, dict[str, str]] = {}

    def object_for(self, rel: str) -> Path | None:
        if self.cache is None:
            return None
        for out, md5 in self.outs.items():
            if rel == out and not md5.endswith(".dir"):
                return _cache_object(self.cache, md5)
            if rel.startswith(out.rstrip("/") + "/") and md5.endswith(".dir"):
                listing = self._listing(md5)
                obj = listing.get(rel[len(out.rstrip("/")) + 1:])
                return _cache_object(self.cache, obj) if obj else None
        return None

    def _listing(self, md5: str) -> dict[str, str]:
        if md5 not in self._listings:
            path = _cache_object(self.cache, md5)
            entries = json.loads(path.read_text()) if path.exists() else []
            self._listings[md5] = {e["relpath"]: e["md5"] for e in entries}
        return self._listings[md5]


def verify(pairs: pd.DataFrame, lineage: dict, root: Path) -> pd.DataFrame:
    """Add `workspace`, `dvc_cache` (ok / modified / missing / unknown) and `status` per pair."""
    index = CacheIndex(root, lineage.get("dvc_outs", {}))
    hashes: dict[Path, str] = {}

    def check(path: Path | None, expected: str) -> str:
        if path is None:
            return "unknown"
        if not path.is_file():
            return "missing"
        if path not in hashes:
            hashes[path] = sha256_file(path)
        return "ok" if hashes[path] == expected else "modified"

    ws, cache, status = [], [], []
    for image, expected in zip(pairs["image"], pairs["image_sha256"]):
        if pd.isna(image) or pd.isna(expected):
            ws.append("unknown"), cache.append("unknown"), status.append("no hash")
            continue
        w = check(root / image, expected)
        c = check(index.object_for(str(image)), expected)
        ws.append(w), cache.append(c)
        status.append(STATUS_OK if w == "ok" or (w == "missing" and c == "ok") else "modified" if w == "modified" else "missing")
    return pairs.assign(workspace=ws, dvc_cache=cache, status=status)


# ---------------------------------------------------------------------------------------- revisions


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def reproducing_revision(root: Path, lineage: dict, mix: str | None, limit: int = 300) -> dict[str, Any]:
    """The git / DVC revision whose dvc.lock trained `mix` on exactly these manifests (md5s)."""
    out: dict[str, Any] = {k: lineage.get(k) or None for k in ("git_commit", "git_dirty", "dvc_exp_name", "dvc_baseline_rev")}
    inputs = lineage.get("inputs") or {}
    exp, base = lineage.get("dvc_exp_name"), lineage.get("dvc_baseline_rev")
    try:
        if exp and base:  # a DVC experiment: its commit lives under refs/exps/<baseline>/<name>
            ref = f"refs/exps/{base[:2]}/{base[2:]}/{exp}"
            sha = _git(root, "rev-parse", "--verify", "--quiet", ref).strip()
            if sha:
                return {**out, "revision": sha, "source": f"DVC experiment {exp}",
                        "reproduce": f"dvc exp apply {exp} && dvc pull && dvc repro pretrain@{mix}"}
        if mix and inputs:
            revs = _git(root, "log", "--all", f"-n{limit}", "--format=%H", "--", "dvc.lock").split()
            for rev in revs:
                try:
                    lock = (yaml.safe_load(_git(root, "show", f"{rev}:dvc.lock")) or {}).get("stages", {})
                except subprocess.CalledProcessError:
                    continue
                if all(lock_dep(lock, f"pretrain@{mix}", p) == m for p, m in inputs.items()):
                    return {**out, "revision": rev, "source": "commit whose dvc.lock records these manifests' md5s",
                            "reproduce": f"git checkout {rev[:12]} && dvc pull && dvc repro pretrain@{mix}"}
    except (OSError, subprocess.CalledProcessError):
        pass
    commit, dirty = out.get("git_commit"), out.get("git_dirty")
    if commit and dirty == "false":
        return {**out, "revision": commit, "source": "the run's git commit (clean workspace)",
                "reproduce": f"git checkout {commit[:12]} && dvc repro pretrain@{mix}"}
    return {**out, "revision": None, "source": "no committed dvc.lock records these manifests "
            "(commit dvc.lock, or `dvc exp run`, to pin them)", "reproduce": None}


def audit(target: str, cfg: TrackingConfig | None = None, root: str | Path | None = None) -> Audit:
    root = Path(root).resolve() if root else repo_root()
    cfg = cfg or load_config(root / "params.yaml")
    a = resolve(target, cfg, root)
    a.pairs = verify(a.pairs, a.lineage, root)
    a.revision = reproducing_revision(root, a.lineage, a.mix)
    return a


# ------------------------------------------------------------------------------------------ --pair


def pair_usage(pair_id: str, cfg: TrackingConfig | None = None, root: str | Path | None = None) -> pd.DataFrame:
    """Every MLflow run (with its registered versions) and workspace model folder that trained on `pair_id`."""
    import mlflow

    root = Path(root).resolve() if root else repo_root()
    cfg = cfg or load_config(root / "params.yaml")
    rows: list[dict] = []
    exp_id = ensure_experiment(cfg, root)
    client = _client()
    versions: dict[str, list[str]] = {}
    try:
        for mv in client.search_model_versions(f"name = '{cfg.registered_model}'"):
            aliases = f" ({','.join(mv.aliases)})" if mv.aliases else ""
            versions.setdefault(mv.run_id, []).append(f"{mv.version}{aliases}")
    except Exception:  # noqa: BLE001 - nothing registered yet
        pass
    token = None
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            page = client.search_runs([exp_id], filter_string="tags.weights_sha256 != ''", max_results=500,
                                      page_token=token)
            for run in page:
                if AUDIT_PAIRS not in _artifact_paths(client, run.info.run_id):
                    continue
                local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=AUDIT_PAIRS,
                                                            dst_path=os.path.join(tmp, run.info.run_id))
                ids = set(pd.read_parquet(local, columns=["pair_id"])["pair_id"])
                if pair_id in ids:
                    t = run.data.tags
                    vs = versions.get(run.info.run_id) or ([t["model_version"]] if t.get("model_version") else [])
                    rows.append({"where": "mlflow run", "run_id": run.info.run_id, "run_name": run.info.run_name,
                                 "mix": t.get("mix"), "seed": t.get("seed"),
                                 "model_versions": ";".join(f"{cfg.registered_model}/{v}" for v in vs),
                                 "dvc_exp_name": t.get("dvc_exp_name") or "", "git_commit": (t.get("git_commit") or "")[:12],
                                 "path": ""})
            token = page.token
            if not token:
                break
    for tp in sorted((root / "models" / "vlp").glob("*/training_pairs.parquet")):
        if pair_id in set(pd.read_parquet(tp, columns=["pair_id"])["pair_id"]):
            rows.append({"where": "workspace", "run_id": "", "run_name": "", "mix": tp.parent.name,
                         "seed": ",".join(s.name.removeprefix("seed-") for s in sorted(tp.parent.glob("seed-*"))),
                         "model_versions": "", "dvc_exp_name": "", "git_commit": "",
                         "path": str(tp.parent.relative_to(root))})
    return pd.DataFrame(rows, columns=["where", "run_id", "run_name", "mix", "seed", "model_versions",
                                       "dvc_exp_name", "git_commit", "path"])


def pair_origin(pair_id: str, root: Path) -> dict[str, Any] | None:
    """Where the pair came from, if the workspace's pruned candidates know it."""
    path = root / "data" / "pruned" / "candidates.parquet"
    if not path.exists():
        return None
    df = pd.read_parquet(path)
    hit = df[df["pair_id"] == pair_id]
    if hit.empty:
        return None
    row = hit.iloc[0]
    keys = ("branch", "source_pair_id", "source_report", "report", "image", "image_sha256", "s_a", "s1", "s2", "s3", "kept")
    return {k: (None if pd.isna(row[k]) else row[k].item() if hasattr(row[k], "item") else row[k]) for k in keys if k in row}


# ---------------------------------------------------------------------------------------------- CLI

TABLE_COLUMNS = ("pair_id", "branch", "source_pair_id", "image", "image_sha256", "s_a", "s1", "s2", "s3", "status")


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
        usage = pair_usage(args.pair, cfg, root)
        origin = pair_origin(args.pair, root)
        text = render(usage, args.format, {"pair_id": args.pair, "origin": origin} if args.format == "json" else None,
                      list_key="used_by")
        if args.format == "table":
            if origin:
                out.write(f"pair {args.pair}: {origin.get('branch')} from source pair {origin.get('source_pair_id')}, "
                          f"image {origin.get('image')}, kept={origin.get('kept')}\n")
            out.write(f"used by {len(usage)} run(s) / model folder(s):\n")
        _write(text, args.output)
        return
    if not args.target:
        raise InputError("give a model to audit (run id, registered version or alias, model folder) or --pair ID")
    a = audit(args.target, cfg, root)
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
        bad = a.pairs[a.pairs["status"] != STATUS_OK]
        print(f"audit: {a.failures} of {len(a.pairs)} pairs not verified: "
              + ", ".join(f"{p} ({s})" for p, s in zip(bad["pair_id"][:5], bad["status"][:5]))
              + (" ..." if a.failures > 5 else ""), file=sys.stderr)
        raise SystemExit(1)


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="list the synthetic pairs that trained a model and verify their images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="run id | runs:/<id> | models:/pairaug-vlp/<version> | @<alias> | "
                                             "models/vlp/<mix>[/seed-<s>]")
    p.add_argument("--pair", metavar="ID", help="reverse lookup: the runs and models that used this pair")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_audit)


__all__ = ["AUDIT_COLUMNS", "Audit", "audit", "pair_usage", "register", "render", "verify"]
