"""MLflow conventions: where runs go, what one run of `pretrain@mix` + `evaluate@mix` holds, and how a
failure to log never fails a stage.

- Tracking URI: `$MLFLOW_TRACKING_URI` (a team server) or `sqlite:///<repo root>/mlflow.db`, the repo
  root being `$DVC_ROOT` under `dvc exp run` (DVC points it at the main workspace, so queued and
  `--temp` experiments log into the same database) and else the folder holding dvc.yaml.
- One run per (mix, seed). `pretrain` creates it: params (every params.yaml key that DVC declares for
  the stage and the stages upstream of it, flattened with dotted keys), tags (git commit, dirty flag, DVC
  experiment name and baseline rev, stage, mix, seed, the weights' sha256), the real and the synthetic
  manifests as inputs whose digest is the file's md5 (what dvc.lock records), the training curve, the
  audit trail (artifacts under `audit/`: the synthetic pairs used, the lineage, the GX result) and the
  model, registered as `tracking.registered_model` with the mix and seed as version tags.
- `evaluate` finds that run again by tags (mix, seed, weights sha256): the run id never enters a DVC
  output, which stay byte-deterministic. It logs its metrics and ROC plots there; when no such run
  exists (outputs pulled from a remote, logging failed earlier) or the run was evaluated with other
  `evaluate` params, it logs a new complete run.
- Any MLflow or network failure is caught by `not_fatal`: the stage's DVC outputs are already written,
  and one warning says "run not logged: ...". Environment variables are never logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pairaug.errors import InputError, ParamError
from pairaug.io import md5_file, repo_root, sha256_file

log = logging.getLogger("pairaug.tracking")

REAL_MANIFEST = "data/prepared/pairs.parquet"
GX_RESULT = "data/validated/result.json"
AUDIT_DIR = "audit"  # run artifacts read by `pairaug audit`
AUDIT_PAIRS = f"{AUDIT_DIR}/synthetic_pairs.parquet"
AUDIT_LINEAGE = f"{AUDIT_DIR}/lineage.json"
AUDIT_COLUMNS = ("pair_id", "branch", "source_pair_id", "source_report", "report", "image", "image_sha256",
                 "s_a", "s1", "s2", "s3")
# The runs table's key columns (`pairaug ui`).
KEY_METRICS = ("zeroshot.mean_auc", "linear_probe.1pct.mean_auc", "linear_probe.10pct.mean_auc",
               "linear_probe.100pct.mean_auc")
VIEW_KEY = "pairaug-mixes"


def synthetic_manifest(mix: str) -> str:
    """The validated synthetic pairs a mix trains on (written by `validate`, read by `pretrain@<mix>`)."""
    return f"data/validated/mixes/{mix}.parquet"


@dataclass
class TrackingConfig:
    enabled: bool = True
    experiment: str = "pairaug"
    registered_model: str = "pairaug-vlp"
    log_model: bool = True  # log + register the model (a pyfunc wrapping the save_pretrained folder)
    http_timeout_s: float = 10.0  # per request to a tracking server (a down server must not stall a stage)
    http_retries: int = 1

    def validate(self, prefix: str) -> None:
        if not self.experiment.strip():
            raise ParamError(f"{prefix}.experiment", "must name an MLflow experiment")
        if not re.fullmatch(r"[\w.\-]+", self.registered_model):
            raise ParamError(f"{prefix}.registered_model", f"letters, digits, '_', '.', '-' only, got {self.registered_model!r}")
        if self.http_timeout_s <= 0:
            raise ParamError(f"{prefix}.http_timeout_s", f"must be > 0, got {self.http_timeout_s!r}")
        if self.http_retries < 0:
            raise ParamError(f"{prefix}.http_retries", f"must be >= 0, got {self.http_retries!r}")


# ------------------------------------------------------------------------------------------ the store


def tracking_uri(root: str | Path | None = None) -> str:
    """$MLFLOW_TRACKING_URI, else the repository's SQLite store (absolute, so every cwd agrees)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(root).resolve() if root else repo_root()
    return f"sqlite:///{root / 'mlflow.db'}"


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "postgresql", "mysql", "mssql")) or "://" not in uri


def configure(cfg: TrackingConfig, root: str | Path | None = None) -> str:
    """Point MLflow at the store; bound HTTP waits (the user's own MLFLOW_HTTP_* settings win)."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(cfg.http_timeout_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(cfg.http_retries))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stage logs readable
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def check_reachable(uri: str, timeout: float) -> None:
    """Fail fast on a tracking server that does not answer /health (instead of retrying per call)."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as e:
        raise ConnectionError(f"tracking server {uri} unreachable ({type(e).__name__})") from None


@contextlib.contextmanager
def _init_lock(root: Path) -> Iterator[None]:
    """Serialise store creation: several processes creating one SQLite store at once can race."""
    lock = root / ".cache" / "mlflow-init.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_experiment(cfg: TrackingConfig, root: str | Path | None = None) -> str:
    """The experiment's id, created on first use (artifacts in <root>/mlartifacts for the local store).

    Tagged as a "Machine learning" experiment so the MLflow UI opens on its runs, not on GenAI traces.
    Call it before starting parallel runs (`pairaug ui` and every stage call it)."""
    from mlflow import MlflowClient

    root = Path(root).resolve() if root else repo_root()
    uri = configure(cfg, root)
    check_reachable(uri, cfg.http_timeout_s)
    guard = _init_lock(root) if uri.startswith("sqlite:") else contextlib.nullcontext()
    with guard:
        client = MlflowClient(uri, uri)
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            location = (root / "mlartifacts").as_uri() if is_local(uri) else None
            exp_id = client.create_experiment(cfg.experiment, artifact_location=location,
                                              tags={"mlflow.experimentKind": "custom_model_development"})
        else:
            exp_id = exp.experiment_id
    return exp_id


@dataclass
class Outcome:
    logged: bool = True
    run_ids: tuple[str, ...] = ()


@contextlib.contextmanager
def not_fatal(what: str) -> Iterator[Outcome]:
    """Run MLflow calls; any failure (server down, store locked, bad artifact) becomes one warning.

    A stage calls this after its DVC outputs are written, so they survive whatever happens here."""
    out = Outcome()
    try:
        yield out
    except Exception as e:  # noqa: BLE001 - logging is best effort by design
        out.logged = False
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        log.warning("run not logged: %s: %s (the stage's outputs are written; rerun the stage to log it)",
                    what, msg[:300])


# ----------------------------------------------------------------------------------- what a run holds


def flatten(value: Any, prefix: str) -> dict[str, str]:
    """{'a.b.c': 'value'} for nested mappings; lists and scalars as their YAML/JSON text."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        return out
    if value is None:
        return {prefix: "null"}
    if isinstance(value, bool):
        return {prefix: "true" if value else "false"}
    if isinstance(value, (list, tuple, dict)):
        return {prefix: json.dumps(value)}
    return {prefix: str(value)}


def _lookup(params: dict, key: str) -> Any:
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ParamError(key, "declared in dvc.yaml but missing from params.yaml")
        value = value[part]
    return value


def stage_params(stages: list[str], workspace: str | Path = ".") -> dict[str, str]:
    """Flattened params.yaml values of every key DVC declares for `stages` and all stages upstream."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    workspace = Path(workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text()) or {}
    with Repo(str(workspace)) as repo:
        index = repo.index
        by_name = {s.addressing: s for s in index.stages}
        keys: set[str] = set()
        for name in stages:
            if name not in by_name:
                raise ParamError("stage argument", f"no DVC stage {name!r} in dvc.yaml")
            for stage in nx.dfs_postorder_nodes(index.graph, by_name[name]):
                for dep in stage.deps:
                    if isinstance(dep, ParamsDependency):
                        keys.update(dep.params or [])
    out: dict[str, str] = {}
    for key in sorted(keys):
        out.update(flatten(_lookup(params, key), key))
    return out


def git_state(workspace: str | Path = ".") -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked or untracked-but-not-ignored files differ from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True, check=True).stdout

    try:
        return git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def read_lock(workspace: str | Path = ".") -> dict:
    path = Path(workspace) / "dvc.lock"
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.exists() else {}


def lock_outs(lock: dict) -> dict[str, str]:
    """{output path: md5} over every stage of a parsed dvc.lock (folders: their `.dir` md5)."""
    return {o["path"]: o["md5"] for entry in lock.values() for o in entry.get("outs", []) if "md5" in o}


def lock_dep(lock: dict, stage: str, path: str) -> str | None:
    for dep in lock.get(stage, {}).get("deps", []):
        if dep.get("path") == path:
            return dep.get("md5")
    return None


def run_tags(mix: str, seed: int, weights_sha: str, stage: str, workspace: str | Path = ".") -> dict[str, str]:
    commit, dirty = git_state(workspace)
    tags = {"mix": mix, "seed": str(seed), "weights_sha256": weights_sha, "stage": stage,
            "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
            "git_commit": commit or "", "git_dirty": "" if dirty is None else str(dirty).lower()}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def weights_sha256(seed_dir: str | Path) -> str:
    seed_dir = Path(seed_dir)
    files = sorted(seed_dir.glob("*.safetensors")) or sorted(seed_dir.glob("*.bin"))
    if not files:
        raise InputError("no model weights (*.safetensors) in the model folder", file=seed_dir)
    return sha256_file(files[0]) if len(files) == 1 else sha256_of_text("".join(sha256_file(f) for f in files))


def sha256_of_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def audit_pairs(training_pairs: pd.DataFrame, validated: pd.DataFrame | None,
                validated_dir: str = "data/validated") -> pd.DataFrame:
    """The synthetic pairs a model trained on, with what an audit needs (image paths repo-relative)."""
    used = training_pairs[training_pairs["branch"] != "real"][["pair_id", "branch", "report"]]
    if validated is None:
        out = used.assign(**{c: pd.NA for c in AUDIT_COLUMNS if c not in used.columns})
        return out[list(AUDIT_COLUMNS)].reset_index(drop=True)
    cols = [c for c in AUDIT_COLUMNS if c in validated.columns and c not in ("branch", "report")]
    out = used.merge(validated[cols], on="pair_id", how="left", validate="one_to_one")
    out["image"] = [None if pd.isna(p) else os.path.normpath(f"{validated_dir}/{p}") for p in out["image"]]
    for c in AUDIT_COLUMNS:
        if c not in out.columns:
            out[c] = pd.NA
    return out[list(AUDIT_COLUMNS)].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ the model


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("torch", "transformers", "tokenizers", "safetensors", "numpy", "mlflow"):
        with contextlib.suppress(PackageNotFoundError):
            reqs.append(f"{pkg}=={version(pkg)}")
    return reqs  # + pairaug itself (pip install -e . from the repository at the run's git commit)


def log_model(client, run_id: str, seed_dir: Path, cfg: TrackingConfig, tags: dict[str, str]) -> str | None:
    """Log the folder as a pyfunc model in the active run and register it; return the version."""
    import mlflow.pyfunc

    code = Path(__file__).with_name("tracking_model.py")  # models from code: nothing pickled
    info = mlflow.pyfunc.log_model(name="model", python_model=str(code), artifacts={"clip": str(seed_dir)},
                                   pip_requirements=_requirements(), registered_model_name=cfg.registered_model)
    version = getattr(info, "registered_model_version", None)
    if version is not None:
        for k in ("mix", "seed", "weights_sha256", "git_commit", "dvc_exp_name"):
            if tags.get(k):
                client.set_model_version_tag(cfg.registered_model, str(version), k, tags[k])
        client.set_tag(run_id, "model_version", str(version))
    return None if version is None else str(version)


# ------------------------------------------------------------------------------------- the two stages


@dataclass
class TrainingRecord:
    """What one (mix, seed) model is made of: enough to log its training run from pretrain or evaluate."""

    mix: str
    seed: int
    seed_dir: Path
    params: dict[str, str]
    tags: dict[str, str]
    inputs: dict[str, str]  # manifest path → md5
    audit: pd.DataFrame
    lineage: dict


def training_records(mix: str, mix_dir: str | Path, stage: str, workspace: str | Path = ".",
                     extra_stages: tuple[str, ...] = (), inputs: dict[str, str] | None = None) -> list[TrainingRecord]:
    """One record per seed-<s>/ folder of a mix's model folder (params and lineage from the workspace).

    `inputs`: the manifests' md5s (pretrain hashes the files; evaluate reads what dvc.lock recorded)."""
    workspace, mix_dir = Path(workspace), Path(mix_dir)
    params = stage_params([f"pretrain@{mix}", *extra_stages], workspace)
    lock = read_lock(workspace)
    syn_rel = synthetic_manifest(mix)
    if inputs is None:
        inputs = {p: md5_file(workspace / p) for p in (REAL_MANIFEST, syn_rel) if (workspace / p).exists()}
    training = pd.read_parquet(mix_dir / "training_pairs.parquet")
    validated = None
    syn_path = workspace / syn_rel
    # Only the version of the synthetic manifest that trained the model (its md5 was recorded).
    if (training["branch"] != "real").any() and syn_path.exists() and inputs.get(syn_rel) == md5_file(syn_path):
        validated = pd.read_parquet(syn_path)
    audit = audit_pairs(training, validated)
    if not (training["branch"] != "real").any():
        inputs = {k: v for k, v in inputs.items() if k != syn_rel}  # `none` trains on real pairs only
    records = []
    for seed_dir in sorted(mix_dir.glob("seed-*")):
        seed = int(seed_dir.name.removeprefix("seed-"))
        tags = run_tags(mix, seed, weights_sha256(seed_dir), stage, workspace)
        lineage = {"mix": mix, "seed": seed, "stage": stage, "inputs": inputs,
                   "dvc_outs": {p: m for p, m in lock_outs(lock).items() if p.startswith("data/")},
                   **{k: tags[k] for k in ("git_commit", "git_dirty", "dvc_exp_name", "dvc_baseline_rev", "weights_sha256")}}
        records.append(TrainingRecord(mix, seed, seed_dir, {k: v for k, v in params.items()}, tags, inputs, audit, lineage))
    return records


def _log_training(client, run_id: str, rec: TrainingRecord, cfg: TrackingConfig, log_the_model: bool,
                  workspace: Path) -> None:
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Metric, Param
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in rec.params.items()], synchronous=True)
    history = rec.seed_dir / "history.json"
    if history.exists():
        h = json.loads(history.read_text())
        metrics = [Metric(name, float(v), now, int(step)) for name in ("train_loss", "valid_score")
                   for step, v in zip(h.get("step", []), h.get(name, [])) if v is not None]
        if h.get("best_score") is not None:
            metrics += [Metric("best_valid_score", float(h["best_score"]), now, 0),
                        Metric("best_step", float(h["best_step"]), now, 0)]
        for i in range(0, len(metrics), 900):
            client.log_batch(run_id, metrics=metrics[i:i + 900], synchronous=True)
    for path, md5 in rec.inputs.items():
        name = "real_pairs" if path == REAL_MANIFEST else "synthetic_pairs"
        # The digest is the file's md5: the hash dvc.lock records, so `dvc` and MLflow name one file alike.
        ds = MetaDataset(source=_dataset_source(workspace / path), name=name, digest=md5)
        mlflow.log_input(ds, context="training", tags={"path": path})
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "synthetic_pairs.parquet"
        rec.audit.to_parquet(pairs, index=False)
        client.log_artifact(run_id, str(pairs), AUDIT_DIR)
        lineage = Path(tmp) / "lineage.json"
        lineage.write_text(json.dumps(rec.lineage, indent=2, sort_keys=True) + "\n")
        client.log_artifact(run_id, str(lineage), AUDIT_DIR)
    client.log_artifact(run_id, str(rec.seed_dir.parent / "training_pairs.parquet"), AUDIT_DIR)
    gx_result = workspace / GX_RESULT
    syn_rel = synthetic_manifest(rec.mix)
    syn_md5 = rec.inputs.get(syn_rel)
    if syn_md5 and gx_result.exists() and md5_file(workspace / syn_rel) == syn_md5:
        client.log_artifact(run_id, str(gx_result), f"{AUDIT_DIR}/gx")
    if log_the_model and cfg.log_model:
        log_model(client, run_id, rec.seed_dir, cfg, rec.tags)


def _dataset_source(path: Path):
    """MLflow's own local-file dataset source for an absolute path."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # the local source is registered under two names; either is right
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(path.resolve()))


def _open_store(cfg: TrackingConfig):
    """(experiment id, tracking URI, MlflowClient) of the configured store, the experiment created if new."""
    from mlflow import MlflowClient

    exp_id = ensure_experiment(cfg)
    uri = tracking_uri()
    return exp_id, uri, MlflowClient(uri, uri)


def log_pretrain(mix: str, cfg: TrackingConfig, mix_dir: str | Path, workspace: str | Path = ".") -> Outcome:
    """After `pretrain@mix` wrote its models: one run per seed (see the module doc). Never raises."""
    with not_fatal(f"pretrain@{mix}") as out:
        if not cfg.enabled:
            return out
        import mlflow

        workspace = Path(workspace)
        exp_id, uri, client = _open_store(cfg)
        ids = []
        for rec in training_records(mix, mix_dir, f"pretrain@{mix}", workspace):
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{mix}-seed{rec.seed}", tags=rec.tags) as run:
                _log_training(client, run.info.run_id, rec, cfg, True, workspace)
                ids.append(run.info.run_id)
        out.run_ids = tuple(ids)
        log.info("MLflow: logged %d run(s) of %s to %s (experiment %r)", len(ids), mix, _display(uri), cfg.experiment)
    return out


def find_training_runs(client, exp_id: str, mix: str, seed: int, weights_sha: str):
    """The runs of this exact model (mix, seed, weights sha256), newest first."""
    return client.search_runs([exp_id], filter_string=f"tags.mix = '{mix}' and tags.seed = '{seed}' and "
                                                      f"tags.weights_sha256 = '{weights_sha}'",
                              order_by=["attributes.start_time DESC"], max_results=50)


def _find_model_version(client, cfg: TrackingConfig, weights_sha: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{cfg.registered_model}' and tags.weights_sha256 = '{weights_sha}'")
    except Exception:  # noqa: BLE001 - a store without the model yet
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def log_evaluate(mix: str, cfg: TrackingConfig, mix_dir: str | Path, result: dict, roc: list[dict],
                 workspace: str | Path = ".") -> Outcome:
    """After `evaluate@mix` wrote its metrics: log them into each seed's training run. Never raises."""
    with not_fatal(f"evaluate@{mix}") as out:
        if not cfg.enabled:
            return out
        import mlflow

        workspace = Path(workspace)
        exp_id, uri, client = _open_store(cfg)
        eval_params = {k: v for k, v in stage_params([f"evaluate@{mix}"], workspace).items()
                       if k.startswith("evaluate.") or k == "seed"}
        lock = read_lock(workspace)
        recorded = {p: lock_dep(lock, f"pretrain@{mix}", p) for p in (REAL_MANIFEST, synthetic_manifest(mix))}
        records = None
        ids = []
        for seed_dir in sorted(Path(mix_dir).glob("seed-*")):
            seed = int(seed_dir.name.removeprefix("seed-"))
            sha = weights_sha256(seed_dir)
            run_id = None
            for run in find_training_runs(client, exp_id, mix, seed, sha):
                logged = {k: v for k, v in run.data.params.items() if k.startswith("evaluate.")}
                if not logged or all(run.data.params.get(k) == v for k, v in eval_params.items()):
                    run_id = run.info.run_id
                    break
            if run_id is None:  # no run of this model with these evaluate params: log a complete one
                if records is None:
                    records = {r.seed: r for r in training_records(
                        mix, mix_dir, f"evaluate@{mix}", workspace, extra_stages=(f"evaluate@{mix}",),
                        inputs={p: m for p, m in recorded.items() if m})}
                rec = records[seed]
                version = _find_model_version(client, cfg, sha)
                with mlflow.start_run(experiment_id=exp_id, run_name=f"{mix}-seed{seed}", tags=rec.tags) as run:
                    run_id = run.info.run_id
                    _log_training(client, run_id, rec, cfg, version is None, workspace)
                    if version is not None:
                        client.set_tag(run_id, "model_version", version)
            else:
                client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in eval_params.items()
                                                 if k.startswith("evaluate.")], synchronous=True)
                # Where the evaluation ran, when it is not where the model was trained.
                here = run_tags(mix, seed, sha, f"evaluate@{mix}", workspace)
                for k in ("git_commit", "git_dirty", "dvc_exp_name", "dvc_baseline_rev"):
                    client.set_tag(run_id, f"evaluate.{k}", here[k])
            _log_eval_metrics(client, run_id, result["seeds"].get(str(seed), {}),
                              [r for r in roc if str(r.get("seed")) == str(seed)], f"{mix} seed {seed}")
            client.set_tag(run_id, "evaluated", "true")
            ids.append(run_id)
        out.run_ids = tuple(ids)
        log.info("MLflow: logged the evaluation of %s into %d run(s) at %s", mix, len(ids), _display(uri))
    return out


def metric_key(*parts: str) -> str:
    """MLflow metric names allow letters, digits, '_', '-', '.', ' ', '/', ':' ('10%' → '10pct')."""
    return ".".join(re.sub(r"[^\w\-. /:]", "", p.replace("%", "pct")) for p in parts)


def eval_metrics(result: dict) -> dict[str, float]:
    """Flat metrics of one seed's evaluation: zero-shot AUC per label + mean, probe per fraction."""
    out: dict[str, float] = {}
    zs = result.get("zeroshot", {})
    for label, v in (zs.get("auc") or {}).items():
        if v is not None:
            out[metric_key("zeroshot", "auc", label)] = float(v)
    if zs.get("mean_auc") is not None:
        out["zeroshot.mean_auc"] = float(zs["mean_auc"])
    probe = result.get("linear_probe", {})
    for frac, aucs in (probe.get("auc") or {}).items():
        for label, v in (aucs or {}).items():
            if v is not None:
                out[metric_key("linear_probe", frac, "auc", label)] = float(v)
    for frac, v in (probe.get("mean_auc") or {}).items():
        if v is not None:
            out[metric_key("linear_probe", frac, "mean_auc")] = float(v)
    for name, set_result in (result.get("label_sets") or {}).items():  # e.g. label_sets.chexpert.zeroshot.mean_auc
        out.update({metric_key("label_sets", name, k): v for k, v in eval_metrics(set_result).items()})
    return out


def _log_eval_metrics(client, run_id: str, result: dict, roc: list[dict], title: str) -> None:
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in eval_metrics(result).items()], synchronous=True)
    if roc:
        client.log_figure(run_id, roc_figure(roc, title), "roc/zeroshot_roc.png")
        client.log_dict(run_id, roc, "roc/zeroshot_roc.json")


def roc_figure(rows: list[dict], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    frame = pd.DataFrame(rows)
    for label, part in frame.groupby("label", sort=True):
        ax.plot(part["fpr"], part["tpr"], label=label, linewidth=1.2)
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"zero-shot ROC, {title}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _display(uri: str) -> str:
    """The URI without credentials (a server URI may carry user:password@)."""
    return re.sub(r"//[^/@]*@", "//", uri)


# ------------------------------------------------------------------------------------ the registry


def model_versions(cfg: TrackingConfig) -> list[dict]:
    from mlflow import MlflowClient

    ensure_experiment(cfg)
    uri = tracking_uri()
    client = MlflowClient(uri, uri)
    try:
        versions = client.search_model_versions(f"name = '{cfg.registered_model}'")
    except Exception as e:  # noqa: BLE001
        raise InputError(f"no registered model {cfg.registered_model!r} ({e})") from None
    return sorted(({"version": v.version, "mix": v.tags.get("mix", ""), "seed": v.tags.get("seed", ""),
                    "aliases": ",".join(v.aliases or []), "run_id": v.run_id,
                    "git_commit": v.tags.get("git_commit", "")[:12]} for v in versions),
                  key=lambda r: int(r["version"]))


def set_alias(cfg: TrackingConfig, alias: str, version: str | None, mix: str | None, seed: int | None) -> str:
    """Point `alias` at a version (given, or the latest of a mix [and seed]); return the version."""
    from mlflow import MlflowClient

    if not re.fullmatch(r"[A-Za-z_][\w\-]*", alias) or re.fullmatch(r"[vV]\d+|latest", alias):
        raise InputError(f"invalid alias {alias!r}: letters, digits, '_' and '-', not 'latest' nor 'v<N>'")
    rows = model_versions(cfg)
    if version is None:
        rows = [r for r in rows if r["mix"] == mix and (seed is None or r["seed"] == str(seed))]
        if not rows:
            raise InputError(f"no version of {cfg.registered_model!r} with mix {mix!r}"
                             + (f" and seed {seed}" if seed is not None else ""))
        version = rows[-1]["version"]
    elif version not in {r["version"] for r in rows}:
        raise InputError(f"no version {version} of {cfg.registered_model!r}")
    uri = tracking_uri()
    MlflowClient(uri, uri).set_registered_model_alias(cfg.registered_model, alias, version)
    return version


def delete_alias(cfg: TrackingConfig, alias: str) -> None:
    from mlflow import MlflowClient

    ensure_experiment(cfg)
    uri = tracking_uri()
    MlflowClient(uri, uri).delete_registered_model_alias(cfg.registered_model, alias)


# ---------------------------------------------------------------------------------------------- UI


def runs_view(cfg: TrackingConfig, root: str | Path | None = None) -> tuple[str, str]:
    """(experiment id, share key): a saved runs-table view with the mixes' key metrics as columns.

    MLflow's UI restores a view from the experiment tag `mlflow.sharedViewState.<key>` named by the
    URL's `viewStateShareKey`."""
    from mlflow import MlflowClient

    exp_id = ensure_experiment(cfg, root)
    uri = tracking_uri(root)
    client = MlflowClient(uri, uri)
    columns = [*[f"metrics.`{m}`" for m in KEY_METRICS], "tags.`mix`", "tags.`dvc_exp_name`"]
    state = {"searchFilter": "", "orderByKey": "tags.`mix`", "orderByAsc": True, "startTime": "ALL",
             "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
             "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}
    client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(state))
    return exp_id, VIEW_KEY


def runs_url(base: str, exp_id: str, key: str | None = None) -> str:
    url = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs"
    return f"{url}?viewStateShareKey={key}" if key else url


def load_config(params_path: str | Path = "params.yaml") -> TrackingConfig:
    from pairaug.params import load_params, section

    return section(TrackingConfig, load_params(params_path), "tracking")
