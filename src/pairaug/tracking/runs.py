"""MLflow run logging: what one run of `pretrain@mix` + `evaluate@mix` holds, and how a failure to log
never fails a stage.

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

What the run records comes from pairaug.tracking.lineage; the store from pairaug.tracking.store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pairaug.io import md5_file
from pairaug.tracking.lineage import (
    GX_RESULT,
    REAL_MANIFEST,
    TrainingRecord,
    lock_dep,
    read_lock,
    run_tags,
    stage_params,
    synthetic_manifest,
    training_records,
    weights_sha256,
)
from pairaug.tracking.registry import find_model_version, log_model
from pairaug.tracking.store import TrackingConfig, display_uri, open_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("pairaug.tracking")

AUDIT_DIR = "audit"  # run artifacts read by `pairaug audit`
AUDIT_PAIRS = f"{AUDIT_DIR}/synthetic_pairs.parquet"
AUDIT_LINEAGE = f"{AUDIT_DIR}/lineage.json"


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


def _log_training(client: MlflowClient, run_id: str, rec: TrainingRecord, cfg: TrackingConfig, log_the_model: bool,
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


def log_pretrain(mix: str, cfg: TrackingConfig, mix_dir: str | Path, workspace: str | Path = ".") -> Outcome:
    """After `pretrain@mix` wrote its models: one run per seed (see the module doc). Never raises."""
    with not_fatal(f"pretrain@{mix}") as out:
        if not cfg.enabled:
            return out
        import mlflow

        workspace = Path(workspace)
        exp_id, uri, client = open_store(cfg)
        ids = []
        for rec in training_records(mix, mix_dir, f"pretrain@{mix}", workspace):
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{mix}-seed{rec.seed}", tags=rec.tags) as run:
                _log_training(client, run.info.run_id, rec, cfg, True, workspace)
                ids.append(run.info.run_id)
        out.run_ids = tuple(ids)
        log.info("MLflow: logged %d run(s) of %s to %s (experiment %r)", len(ids), mix, display_uri(uri), cfg.experiment)
    return out


def find_training_runs(client: MlflowClient, exp_id: str, mix: str, seed: int, weights_sha: str):
    """The runs of this exact model (mix, seed, weights sha256), newest first."""
    return client.search_runs([exp_id], filter_string=f"tags.mix = '{mix}' and tags.seed = '{seed}' and "
                                                      f"tags.weights_sha256 = '{weights_sha}'",
                              order_by=["attributes.start_time DESC"], max_results=50)


def log_evaluate(mix: str, cfg: TrackingConfig, mix_dir: str | Path, result: dict, roc: list[dict],
                 workspace: str | Path = ".") -> Outcome:
    """After `evaluate@mix` wrote its metrics: log them into each seed's training run. Never raises."""
    with not_fatal(f"evaluate@{mix}") as out:
        if not cfg.enabled:
            return out
        import mlflow

        workspace = Path(workspace)
        exp_id, uri, client = open_store(cfg)
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
                version = find_model_version(client, cfg, sha)
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
        log.info("MLflow: logged the evaluation of %s into %d run(s) at %s", mix, len(ids), display_uri(uri))
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


def _log_eval_metrics(client: MlflowClient, run_id: str, result: dict, roc: list[dict], title: str) -> None:
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
