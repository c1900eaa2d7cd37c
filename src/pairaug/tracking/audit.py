"""`pairaug audit`: which synthetic pairs trained a model, are their images still the ones it saw, and
which revision reproduces them; `--pair ID`: which runs and models a pair trained.

A model is named by an MLflow run id (`runs:/<id>` or the bare id), a registered version
(`models:/pairaug-vlp/3`, `pairaug-vlp/3`, `3`) or alias (`models:/pairaug-vlp@champion`, `@champion`),
or a model folder (`models/vlp/<mix>` or one of its `seed-<s>/`). Runs carry their own audit trail
(artifacts `audit/synthetic_pairs.parquet` and `audit/lineage.json`, see pairaug.tracking); a folder
is read against the workspace (its `training_pairs.parquet`, `dvc.lock`, `data/validated`).

Each image is hashed (sha256) in the workspace and, through the DVC outputs recorded in the lineage,
in the DVC cache: `verified` (workspace matches, or the file is absent and the cache matches),
`modified` (the workspace file differs from the hash the pair was trained with, or its provenance text
chunks name another pair, branch, source or prompt than the pair's row), `missing`.

Each pair's `review` is the review decision prune applied when the model's pairs were made (lineage);
`review_now` is what review/decisions.csv says today (`stale` when it names another image), so a pair
rejected after the model trained shows up.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pairaug.data.decisions import read_decisions
from pairaug.data.provenance import mismatches, read_provenance
from pairaug.errors import InputError
from pairaug.hashing import file_digest
from pairaug.layout import DECISIONS
from pairaug.paths import repo_root
from pairaug.tracking.lineage import (
    REAL_MANIFEST,
    DvcCache,
    audit_pairs,
    decisions_input,
    git_state,
    lock_dep,
    lock_outs,
    read_lock,
    read_table,
    reproducing_revision,
    synthetic_manifest,
    weights_sha256,
)
from pairaug.tracking.runs import AUDIT_LINEAGE, AUDIT_PAIRS
from pairaug.tracking.store import TrackingConfig, load_config, open_existing_store, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Audit only reads: every MLflow access goes through `open_existing_store`, which creates no store,
# experiment or lock file (a mistyped run id must leave the repository as it was).

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
        return _from_run(target, run_id, cfg, root, "run", None)
    ref = parse_model_ref(target, cfg.registered_model)
    if ref is None:
        raise InputError(f"cannot read {target!r} as a model folder, run id, registered version or alias "
                         "(e.g. models/vlp/pairaug, runs:/<id>, models:/pairaug-vlp/3, @champion)")
    name, version, alias = ref
    client = open_existing_store(cfg, root)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception as e:  # noqa: BLE001 - MlflowException names what is missing
        raise InputError(f"no registered model version {target!r}: {str(e).splitlines()[0]}") from None
    return _from_run(target, mv.run_id, cfg, root, "model version", f"{name}/{mv.version}")


def _from_run(target: str, run_id: str, cfg: TrackingConfig, root: Path, kind: str, version: str | None) -> Audit:
    import mlflow

    client = open_existing_store(cfg, root)
    try:
        run = client.get_run(run_id)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"no MLflow run {run_id!r} at {tracking_uri(root)}: {str(e).splitlines()[0]}") from None
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


def _artifact_paths(client: MlflowClient, run_id: str) -> set[str]:
    try:
        return {f.path for f in client.list_artifacts(run_id, "audit")}
    except Exception:  # noqa: BLE001
        return set()


def _from_folder(target: str, path: Path, root: Path) -> Audit:
    path = path.resolve()
    seed = None
    if path.name.startswith("seed-") and (path.parent / "training_pairs.parquet").exists():
        seed, path = path.name.removeprefix("seed-"), path.parent
        if not seed.isdigit():  # pretrain names a model seed-<replicate>
            raise InputError("not a model folder of a replicate (seed-<integer>)", file=path / f"seed-{seed}")
    if not (path / "training_pairs.parquet").exists():
        raise InputError("not a pretrained mix folder (no training_pairs.parquet)", file=path)
    mix = path.name
    lock = read_lock(root)
    manifest = synthetic_manifest(mix)
    inputs = {p: m for p in (REAL_MANIFEST, manifest) if (m := lock_dep(lock, f"pretrain@{mix}", p))}
    training = read_table(path / "training_pairs.parquet")
    if (training["branch"] != "real").any():
        inputs.update(decisions_input(lock, root))
    validated = None
    syn = root / manifest
    if syn.exists() and (manifest not in inputs or file_digest(syn, "md5") == inputs[manifest]):
        validated = read_table(syn)
    commit, dirty = git_state(root)
    seeds = sorted(path.glob("seed-*"))
    lineage = {"mix": mix, "inputs": inputs, "git_commit": commit or "", "git_dirty": str(dirty).lower(),
               "dvc_outs": {p: m for p, m in lock_outs(lock).items() if p.startswith("data/")},
               "weights_sha256": {s.name: weights_sha256(s) for s in seeds}}
    audit = audit_pairs(training, validated, replicate=None if seed is None else int(seed))
    return Audit(target, "folder", mix, seed, None, None, lineage, audit)


# ------------------------------------------------------------------------------------------- hashes


# ------------------------------------------------------------------------------------------- hashes


def verify(pairs: pd.DataFrame, lineage: dict, root: Path) -> pd.DataFrame:
    """Add `workspace`, `dvc_cache` (ok / modified / missing / unknown), `provenance` and `status` per pair.

    `provenance`: the image's PNG text chunks against the pair's row (pairaug.data.provenance): `ok`,
    `none` (no chunks: a real film, or an image written before chunks existed), or the fields that
    differ (`differs: pair_id, ...`) — an image whose chunks name another pair is `modified` even when
    its bytes have the recorded hash."""
    index = DvcCache(root, lineage.get("dvc_outs", {}))
    hashes: dict[Path, str] = {}

    def check(path: Path | None, expected: str) -> str:
        if path is None:
            return "unknown"
        if not path.is_file():
            return "missing"
        if path not in hashes:
            hashes[path] = file_digest(path)
        return "ok" if hashes[path] == expected else "modified"

    ws, cache, prov, status = [], [], [], []
    for row in pairs.to_dict("records"):
        image, expected = row.get("image"), row.get("image_sha256")
        if pd.isna(image) or pd.isna(expected):
            ws.append("unknown"), cache.append("unknown"), prov.append("unknown"), status.append("no hash")
            continue
        cached = index.object_for(str(image))
        w = check(root / image, expected)
        c = check(cached, expected)
        present = root / image if w != "missing" else cached if c in ("ok", "modified") else None
        p = _provenance_state(present, row)
        ws.append(w), cache.append(c), prov.append(p)
        if p.startswith("differs") or w == "modified":
            status.append("modified")
        else:
            status.append(STATUS_OK if w == "ok" or (w == "missing" and c == "ok") else "missing")
    return pairs.assign(workspace=ws, dvc_cache=cache, provenance=prov, status=status)


def _provenance_state(path: Path | None, row: dict) -> str:
    if path is None:
        return "unknown"
    try:
        found = read_provenance(path)
    except InputError:  # not a readable PNG: the hash check already says what is wrong with it
        return "unreadable"
    if not found:
        return "none"
    bad = mismatches(found, {k: (None if k not in row or _missing(row[k]) else row[k]) for k in row})
    return f"differs: {', '.join(bad)}" if bad else "ok"


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def review_now(pairs: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Add `review_now`: each pair's decision in the workspace's review/decisions.csv today (`stale` when the
    decision was made on another image than the one the model trained with; empty when not reviewed)."""
    d = read_decisions(root / DECISIONS).set_index("pair_id")
    now = []
    for pid, sha in zip(pairs["pair_id"], pairs["image_sha256"]):
        if pid not in d.index:
            now.append("")
        else:
            now.append(d.at[pid, "decision"] if d.at[pid, "image_sha256"] == sha else "stale")
    return pairs.assign(review_now=now)


# ---------------------------------------------------------------------------------------- revisions


def audit(target: str, cfg: TrackingConfig | None = None, root: str | Path | None = None) -> Audit:
    root = Path(root).resolve() if root else repo_root()
    cfg = cfg or load_config(root / "params.yaml")
    a = resolve(target, cfg, root)
    a.pairs = review_now(verify(a.pairs, a.lineage, root), root)
    a.revision = reproducing_revision(root, a.lineage, a.mix)
    return a


# ------------------------------------------------------------------------------------------ --pair


def _runs_using(pair_id: str, client: MlflowClient, exp_id: str, cfg: TrackingConfig) -> list[dict]:
    """The experiment's runs whose audit trail lists `pair_id`, with their registered versions."""
    import mlflow

    rows: list[dict] = []
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
    return rows


def pair_usage(pair_id: str, cfg: TrackingConfig | None = None, root: str | Path | None = None) -> pd.DataFrame:
    """Every MLflow run (with its registered versions) and workspace model folder that trained on `pair_id`."""
    root = Path(root).resolve() if root else repo_root()
    cfg = cfg or load_config(root / "params.yaml")
    rows: list[dict] = []
    try:
        client = open_existing_store(cfg, root)
        experiment = client.get_experiment_by_name(cfg.experiment)
    except InputError:  # nothing logged yet: only the workspace's model folders can have used the pair
        experiment = None
    if experiment is not None:
        rows += _runs_using(pair_id, client, experiment.experiment_id, cfg)
    for tp in sorted((root / "models" / "vlp").glob("*/training_pairs.parquet")):
        if pair_id in set(read_table(tp)["pair_id"]):
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
    keys = ("branch", "source_pair_id", "source_report", "report", "image", "image_sha256", "s_a", "s1", "s2", "s3", "kept",
            "review")
    return {k: (None if pd.isna(row[k]) else row[k].item() if hasattr(row[k], "item") else row[k]) for k in keys if k in row}
