"""Where MLflow runs go and how to open the store: the `tracking` params section, the URI, the experiment.

- Tracking URI: `$MLFLOW_TRACKING_URI` (a team server) or `sqlite:///<repo root>/mlflow.db`, the repo
  root being `$DVC_ROOT` under `dvc exp run` (DVC points it at the main workspace, so queued and
  `--temp` experiments log into the same database) and else the folder holding dvc.yaml.
- Writers (the stages, `pairaug ui`, `pairaug model`) open it with `open_store`, which creates the store
  and the experiment on first use; readers (`pairaug audit`) with `open_existing_store`, which creates nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pairaug.errors import InputError, ParamError
from pairaug.params import NonNegative, Params, Positive
from pairaug.paths import repo_root

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class TrackingConfig(Params):
    enabled: bool = True
    experiment: str = "pairaug"
    registered_model: str = "pairaug-vlp"
    log_model: bool = True  # log + register the model (a pyfunc wrapping the save_pretrained folder)
    http_timeout_s: Annotated[float, Positive] = 10.0  # per request to a tracking server (a down server must not stall a stage)
    http_retries: Annotated[int, NonNegative] = 1
    # `rewrite`: each LLM request as an MLflow trace (only into a store the reports may go to: local, or a
    # host in rewrite.private_hosts)
    trace_rewrites: bool = True

    def rules(self) -> None:
        if not self.experiment.strip():
            raise ParamError("experiment", "must name an MLflow experiment")
        if not re.fullmatch(r"[\w.\-]+", self.registered_model):
            raise ParamError("registered_model", f"letters, digits, '_', '.', '-' only, got {self.registered_model!r}")


def load_config(params_path: str | Path = "params.yaml") -> TrackingConfig:
    from pairaug.params import load_params, section

    return section(TrackingConfig, load_params(params_path), "tracking")


def tracking_uri(root: str | Path | None = None) -> str:
    """$MLFLOW_TRACKING_URI, else the repository's SQLite store (absolute, so every cwd agrees)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(root).resolve() if root else repo_root()
    return f"sqlite:///{root / 'mlflow.db'}"


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "postgresql", "mysql", "mssql")) or "://" not in uri


def display_uri(uri: str) -> str:
    """The URI without credentials (a server URI may carry user:password@)."""
    return re.sub(r"//[^/@]*@", "//", uri)


def local_store_path(uri: str) -> Path | None:
    """The file or folder holding a local store (SQLite database, file store), None for a server."""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" else None
    if uri.startswith("file:"):
        from mlflow.utils.file_utils import local_file_uri_to_path

        return Path(local_file_uri_to_path(uri))
    return Path(uri) if "://" not in uri else None


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


def open_store(cfg: TrackingConfig, root: str | Path | None = None) -> tuple[str, str, MlflowClient]:
    """(experiment id, tracking URI, MlflowClient) of the configured store, the experiment created if new."""
    from mlflow import MlflowClient

    exp_id = ensure_experiment(cfg, root)
    uri = tracking_uri(root)
    return exp_id, uri, MlflowClient(uri, uri)


def open_existing_store(cfg: TrackingConfig, root: str | Path | None = None) -> MlflowClient:
    """A client on the configured store for reading: no database, experiment or lock file is created.

    A local store that does not exist yet is an InputError (MLflow would create an empty one)."""
    from mlflow import MlflowClient

    uri = configure(cfg, root)
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise InputError(f"no MLflow store at {display_uri(uri)}: nothing has been logged yet "
                         "(`dvc repro` logs the pretrain and evaluate runs)")
    check_reachable(uri, cfg.http_timeout_s)
    return MlflowClient(uri, uri)
