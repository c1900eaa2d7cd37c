"""The model registry: a pretrained CLIP folder logged as a pyfunc and registered with its mix and seed as
version tags, finding a version again by its weights, listing versions, and aliases (e.g. `champion`)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pairaug.errors import InputError
from pairaug.tracking.store import TrackingConfig, open_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

# "Models from code": MLflow stores and later runs this file; nothing is pickled.
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
VERSION_TAGS = ("mix", "seed", "weights_sha256", "git_commit", "dvc_exp_name")


def requirements() -> list[str]:
    """Pinned versions of what loading the pyfunc needs (+ pairaug itself, `pip install -e .` at the run's commit)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("torch", "transformers", "tokenizers", "safetensors", "numpy", "mlflow"):
        with contextlib.suppress(PackageNotFoundError):
            reqs.append(f"{pkg}=={version(pkg)}")
    return reqs


def log_model(client: MlflowClient, run_id: str, seed_dir: Path, cfg: TrackingConfig, tags: dict[str, str]) -> str | None:
    """Log the folder as a pyfunc model in the active run and register it; return the version."""
    import mlflow.pyfunc

    info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE), artifacts={"clip": str(seed_dir)},
                                   pip_requirements=requirements(), registered_model_name=cfg.registered_model)
    version = getattr(info, "registered_model_version", None)
    if version is not None:
        for k in VERSION_TAGS:
            if tags.get(k):
                client.set_model_version_tag(cfg.registered_model, str(version), k, tags[k])
        client.set_tag(run_id, "model_version", str(version))
    return None if version is None else str(version)


def find_model_version(client: MlflowClient, cfg: TrackingConfig, weights_sha: str) -> str | None:
    """The newest registered version of these exact weights, None when there is none."""
    try:
        versions = client.search_model_versions(f"name = '{cfg.registered_model}' and tags.weights_sha256 = '{weights_sha}'")
    except Exception:  # noqa: BLE001 - a store without the model yet
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def model_versions(cfg: TrackingConfig) -> list[dict]:
    _, _, client = open_store(cfg)
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
    _, _, client = open_store(cfg)
    client.set_registered_model_alias(cfg.registered_model, alias, version)
    return version


def delete_alias(cfg: TrackingConfig, alias: str) -> None:
    _, _, client = open_store(cfg)
    client.delete_registered_model_alias(cfg.registered_model, alias)
