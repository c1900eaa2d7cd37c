"""MLflow run logging: what one run of `pretrain@mix` + `evaluate@mix` holds, and how a failure to log
never fails a stage.

- One run per (mix, seed). `pretrain` opens it on rank 0 as the seed starts training (`PretrainRuns`,
  the stage's hooks into the training loop): run name, params (every params.yaml key that DVC declares
  for the stage and the stages upstream of it, flattened with dotted keys) and tags (git commit, dirty
  flag, DVC experiment name and baseline rev, stage, mix, seed) at once, then the training curve
  (`train_loss`, `valid_score`) at each evaluation, so the UI shows a RUNNING run with its progress.
  Once the stage's outputs are written it completes the run: the weights' sha256 tag, `best_step` and
  `best_valid_score`, the real and the synthetic manifests (and, for a mix with synthetic pairs, the
  review decisions prune applied, review/decisions.csv) as inputs whose digest is the file's md5
  (what dvc.lock records), the audit trail (artifacts under `audit/`: the synthetic pairs used, the
  lineage, the GX result, the run's datasheet) and the model, registered as `tracking.registered_model`
  with the mix and seed as version tags. The run's start and end are the seed's training (its Duration column).
- `evaluate` finds that run again by tags (mix, seed, weights sha256): the run id never enters a DVC
  output, which stay byte-deterministic. It logs its metrics and ROC plots there; when no such run
  exists (outputs pulled from a remote, logging failed earlier) or the run was evaluated with other
  `evaluate` params, it logs a new complete run.
- Any MLflow or network failure is caught by `not_fatal`: the stage's DVC outputs are already written,
  and one warning says "run not logged: ...". A failure while training stops the live logging (one
  warning; training goes on undisturbed) and the run is logged whole after the outputs are written.
  A stage that fails while training marks its open runs FAILED (KILLED when interrupted). Environment
  variables are never logged.

What the run records comes from pairaug.tracking.lineage; the store from pairaug.tracking.store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pairaug.hashing import file_digest
from pairaug.layout import DECISIONS, GX_RESULT
from pairaug.tracking.evaluation import log_eval_metrics
from pairaug.tracking.lineage import (
    DATASHEET,
    REAL_MANIFEST,
    TrainingRecord,
    lock_dep,
    read_lock,
    run_tags,
    split_rows,
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


@dataclass
class _LiveRun:
    run_id: str
    params: set[str]  # the param keys logged when the run opened
    steps: set[int] = field(default_factory=set)  # curve points logged while training
    ended_ms: int | None = None  # the seed's training (and model folder) done
    completed: bool = False


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
                  workspace: Path, live: _LiveRun | None = None) -> None:
    """Log a training record into the active run `run_id`; `live`: what the run already holds (its params
    as the stage read them at the start, the curve points logged while training), logged only once."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Metric, Param
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    logged_params = live.params if live else set()
    logged_steps = live.steps if live else set()
    params = [Param(k, v[:6000]) for k, v in rec.params.items() if k not in logged_params]
    for i in range(0, len(params), 90):
        client.log_batch(run_id, params=params[i:i + 90], synchronous=True)
    history = rec.seed_dir / "history.json"
    if history.exists():
        h = json.loads(history.read_text())
        metrics = [Metric(name, float(v), now, int(step)) for name in ("train_loss", "valid_score")
                   for step, v in zip(h.get("step", []), h.get(name, [])) if v is not None and int(step) not in logged_steps]
        if h.get("best_score") is not None:
            metrics += [Metric("best_valid_score", float(h["best_score"]), now, 0),
                        Metric("best_step", float(h["best_step"]), now, 0)]
        for i in range(0, len(metrics), 900):
            client.log_batch(run_id, metrics=metrics[i:i + 900], synchronous=True)
    for path, md5 in rec.inputs.items():
        name = {REAL_MANIFEST: "real_pairs", DECISIONS: "review_decisions"}.get(path, "synthetic_pairs")
        # The digest is the file's md5: the hash dvc.lock records, so `dvc` and MLflow name one file alike.
        ds = MetaDataset(source=_dataset_source(workspace / path), name=name, digest=md5)
        mlflow.log_input(ds, context="training", tags={"path": path})
    _log_prompts(client, run_id, rec.prompts)
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
    if syn_md5 and gx_result.exists() and file_digest(workspace / syn_rel, "md5") == syn_md5:
        client.log_artifact(run_id, str(gx_result), f"{AUDIT_DIR}/gx")
    # `none` records no synthetic input (it trains on real pairs only); its manifest is the workspace's
    mix_md5 = syn_md5 or (file_digest(workspace / syn_rel, "md5") if (workspace / syn_rel).exists() else None)
    if mix_md5 and datasheet_describes(workspace, rec.mix, mix_md5):
        for rel in DATASHEET:
            client.log_artifact(run_id, str(workspace / rel), f"{AUDIT_DIR}/datasheet")
    if log_the_model and cfg.log_model:
        log_model(client, run_id, rec.seed_dir, cfg, rec.tags)


def _log_prompts(client: MlflowClient, run_id: str, prompts: dict[str, dict]) -> None:
    """The rewrite instructions behind the run's synthetic reports: tags `rewrite.<task>.prompt_sha` and
    `.prompt_uri` side by side, and each version linked to the run (MLflow's own record: the run page lists
    it, the prompt page lists the run). A version this store does not hold is tagged, not linked."""
    for task, p in prompts.items():
        client.set_tag(run_id, f"rewrite.{task}.prompt_sha", ",".join(p["sha"]))
        client.set_tag(run_id, f"rewrite.{task}.prompt_uri", ",".join(p["uri"]))
        for uri in p["uri"]:
            try:
                client.link_prompt_version_to_run(run_id, uri)
            except Exception as e:  # noqa: BLE001 - registered in another store (a pulled workspace)
                log.debug("prompt %s not linked to run %s: %s", uri, run_id, e)


def datasheet_describes(workspace: Path, mix: str, manifest_md5: str) -> bool:
    """Does the workspace's datasheet describe the pairs this model trained on (it records each mix
    manifest's md5)? A datasheet of another run is not logged with this model."""
    md, sheet = (workspace / rel for rel in DATASHEET)
    if not (md.exists() and sheet.exists()):
        return False
    try:
        recorded = json.loads(sheet.read_text()).get("validated", {}).get("mixes", {}).get(mix)
    except (json.JSONDecodeError, AttributeError):
        return False
    return recorded == manifest_md5


def _dataset_source(path: Path):
    """MLflow's own local-file dataset source for an absolute path."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # the local source is registered under two names; either is right
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(path.resolve()))


class PretrainRuns:
    """Rank 0's MLflow runs of `pretrain@mix`: opened as each seed starts training, the training curve
    logged as it goes (the stage passes this object to the training loop as its `PretrainHooks`), and
    completed by `complete` once the outputs are written. See the module doc.

    Nothing here touches torch or the model: the DVC outputs are the same with tracking on or off. The
    run ids live in this object only, never in an output. A hook never raises: the first MLflow failure
    while training warns once and stops the live logging; `complete` then logs the run whole."""

    def __init__(self, mix: str, cfg: TrackingConfig, workspace: str | Path = "."):
        self.mix, self.cfg, self.workspace = mix, cfg, Path(workspace)
        self.stage = f"pretrain@{mix}"
        self.live: dict[int, _LiveRun] = {}
        self._stopped = not cfg.enabled
        self._store = None  # (experiment id, uri, client, params), opened by the first seed

    # -- hooks (pairaug.train.pretrain.PretrainHooks), called while training

    def seed_started(self, seed: int) -> None:
        with self._live(seed) as ok:
            if not ok:
                return
            from mlflow.entities import Param
            from mlflow.tracking.context.registry import resolve_tags

            if self._store is None:
                exp_id, uri, client = open_store(self.cfg)
                self._store = (exp_id, uri, client, stage_params([self.stage], self.workspace))
            exp_id, uri, client, params = self._store
            tags = {k: v for k, v in run_tags(self.mix, seed, "", self.stage, self.workspace).items()
                    if k != "weights_sha256"}  # known once the weights are written
            run = client.create_run(exp_id, tags=resolve_tags(tags), run_name=f"{self.mix}-seed{seed}")
            self.live[seed] = live = _LiveRun(run.info.run_id, set())
            batch = [Param(k, v[:6000]) for k, v in params.items()]
            for i in range(0, len(batch), 90):
                client.log_batch(run.info.run_id, params=batch[i:i + 90], synchronous=True)
            live.params = set(params)
            log.info("MLflow: run %s-seed%s is live at %s (experiment %r)", self.mix, seed, display_uri(uri),
                     self.cfg.experiment)

    def evaluated(self, seed: int, step: int, train_loss: float, valid_score: float) -> None:
        with self._live(seed) as ok:
            if not ok or seed not in self.live:
                return
            from mlflow.entities import Metric
            from mlflow.utils.time import get_current_time_millis

            run, now = self.live[seed], get_current_time_millis()
            metrics = [Metric(name, float(v), now, int(step)) for name, v in
                       (("train_loss", train_loss), ("valid_score", valid_score)) if v is not None]
            self._store[2].log_batch(run.run_id, metrics=metrics, synchronous=True)
            run.steps.add(int(step))

    def seed_finished(self, seed: int) -> None:
        if seed in self.live:
            self.live[seed].ended_ms = int(time.time() * 1000)  # as MLflow's own timestamps

    @contextlib.contextmanager
    def _live(self, seed: int) -> Iterator[bool]:
        """Yield whether to log live; the first failure warns once and stops live logging."""
        if self._stopped:
            yield False
            return
        try:
            yield True
        except Exception as e:  # noqa: BLE001 - logging is best effort by design
            self._stopped = True
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("live run not logged: %s seed %s: %s (training goes on; the run is logged once the "
                        "outputs are written)", self.stage, seed, msg[:300])

    # -- after training

    def abort(self, status: str = "FAILED") -> None:
        """Training failed (or was interrupted: "KILLED"): end the open runs so. Never raises."""
        for run in self.live.values():
            if not run.completed and self._store is not None:
                with contextlib.suppress(Exception):
                    self._store[2].set_terminated(run.run_id, status)
                run.completed = True

    def complete(self, mix_dir: str | Path) -> Outcome:
        """After `pretrain@mix` wrote its models: complete each seed's live run, or log a whole new one
        where none is open (live logging off or failed). Never raises."""
        with not_fatal(self.stage) as out:
            if not self.cfg.enabled:
                return out
            import mlflow

            exp_id, uri, client = open_store(self.cfg)
            ids = []
            for rec in training_records(self.mix, mix_dir, self.stage, self.workspace):
                run = self.live.get(rec.seed)
                if run is None or run.completed:
                    with mlflow.start_run(experiment_id=exp_id, run_name=f"{self.mix}-seed{rec.seed}",
                                          tags=rec.tags) as new:
                        _log_training(client, new.info.run_id, rec, self.cfg, True, self.workspace)
                        ids.append(new.info.run_id)
                    continue
                with mlflow.start_run(run_id=run.run_id, tags=rec.tags):
                    _log_training(client, run.run_id, rec, self.cfg, True, self.workspace, live=run)
                run.completed = True
                if run.ended_ms is not None:  # the run's duration is the seed's training
                    client.set_terminated(run.run_id, "FINISHED", end_time=run.ended_ms)
                ids.append(run.run_id)
            out.run_ids = tuple(ids)
            log.info("MLflow: logged %d run(s) of %s to %s (experiment %r)", len(ids), self.mix, display_uri(uri),
                     self.cfg.experiment)
        if not out.logged:
            self.abort()  # a live run left half-logged ends FAILED, not RUNNING for ever
        return out


def log_pretrain(mix: str, cfg: TrackingConfig, mix_dir: str | Path, workspace: str | Path = ".") -> Outcome:
    """After `pretrain@mix` wrote its models, without live runs: one complete run per seed. Never raises."""
    return PretrainRuns(mix, cfg, workspace).complete(mix_dir)


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
        evaluation = _evaluation_input(workspace / REAL_MANIFEST, "test")  # evaluate scores the test split
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
            log_eval_metrics(client, run_id, result["seeds"].get(str(seed), {}),
                              [r for r in roc if str(r.get("seed")) == str(seed)], f"{mix} seed {seed}")
            client.log_inputs(run_id, datasets=[evaluation])
            client.set_tag(run_id, "evaluated", "true")
            ids.append(run_id)
        out.run_ids = tuple(ids)
        log.info("MLflow: logged the evaluation of %s into %d run(s) at %s", mix, len(ids), display_uri(uri))
    return out


def _evaluation_input(pairs_path: Path, split: str):
    """The split the metrics were computed on as an `evaluation` dataset input: its rows' md5 as digest
    (pairaug.tracking.lineage.split_rows), its schema and row count; the reports themselves are not logged."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    rows, md5 = split_rows(pairs_path, split)
    ds = mlflow.data.from_pandas(rows.drop(columns=["report"], errors="ignore"), source=_dataset_source(pairs_path),
                                 name=f"{split}_split", digest=md5)
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "evaluation"), InputTag("path", REAL_MANIFEST),
            InputTag("split", split), InputTag("rows", str(len(rows)))]
    return DatasetInput(ds._to_mlflow_entity(), tags=tags)
