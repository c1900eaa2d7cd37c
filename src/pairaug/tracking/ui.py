"""The MLflow UI's view of the experiment: a saved runs-table view (the mixes' key metrics as columns) and
the link that opens it."""

from __future__ import annotations

import json
from pathlib import Path

from pairaug.tracking.store import TrackingConfig, open_store

# The runs table's key columns (`pairaug ui`).
KEY_METRICS = ("zeroshot.mean_auc", "linear_probe.1pct.mean_auc", "linear_probe.10pct.mean_auc",
               "linear_probe.100pct.mean_auc")
VIEW_KEY = "pairaug-mixes"


def runs_view(cfg: TrackingConfig, root: str | Path | None = None) -> tuple[str, str]:
    """(experiment id, share key): a saved runs-table view with the mixes' key metrics as columns.

    MLflow's UI restores a view from the experiment tag `mlflow.sharedViewState.<key>` named by the
    URL's `viewStateShareKey`."""
    exp_id, _, client = open_store(cfg, root)
    columns = [*[f"metrics.`{m}`" for m in KEY_METRICS], "tags.`mix`", "tags.`dvc_exp_name`"]
    state = {"searchFilter": "", "orderByKey": "tags.`mix`", "orderByAsc": True, "startTime": "ALL",
             "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
             "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}
    client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(state))
    return exp_id, VIEW_KEY


def runs_url(base: str, exp_id: str, key: str | None = None) -> str:
    """The UI's runs table of experiment `exp_id` (MLflow's hash route), restoring view `key` if given."""
    url = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs"
    return f"{url}?viewStateShareKey={key}" if key else url
