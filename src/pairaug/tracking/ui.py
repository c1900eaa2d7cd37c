"""The MLflow UI's view of the experiment: the link `pairaug ui` prints, and a saved runs-table view with
the mixes' key metrics as columns.

The link opens the runs table in MLflow's "Model training" side bar, sorted by mix, with no
`viewStateShareKey`: a share key makes MLflow 3 show "You're viewing a shared view" above the table.
The key-metrics view is a named saved view (MLflow's `mlflow.sharedViewState.<id>` experiment tag, in the
envelope the UI's "Views" menu lists), one click away in that menu.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

from pairaug.tracking.store import TrackingConfig, open_store

# The runs table's key columns (the saved view).
KEY_METRICS = ("zeroshot.mean_auc", "linear_probe.1pct.mean_auc", "linear_probe.10pct.mean_auc",
               "linear_probe.100pct.mean_auc")
VIEW_KEY = "pairaug-mixes"
VIEW_NAME = "pairaug: mixes and key metrics"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
_ORDER = {"orderByKey": "tags.`mix`", "orderByAsc": "true"}


def view_state() -> dict:
    columns = [*[f"metrics.`{m}`" for m in KEY_METRICS], "tags.`mix`", "tags.`dvc_exp_name`"]
    return {"searchFilter": "", "orderByKey": "tags.`mix`", "orderByAsc": True, "startTime": "ALL",
            "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
            "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}


def runs_view(cfg: TrackingConfig, root: str | Path | None = None) -> str:
    """The experiment's id, with the saved view `VIEW_NAME` in place (written once, kept as is after)."""
    exp_id, _, client = open_store(cfg, root)
    state = json.dumps(view_state())
    current = client.get_experiment(exp_id).tags.get(VIEW_TAG)
    try:
        kept = json.loads(current)["state"] == state if current else False
    except (ValueError, KeyError, TypeError):  # an older bare state: replaced by the envelope
        kept = False
    if not kept:
        now = int(time.time() * 1000)
        client.set_experiment_tag(exp_id, VIEW_TAG, json.dumps({"name": VIEW_NAME, "createdAt": now,
                                                                "updatedAt": now, "state": state}))
    return exp_id


def runs_url(base: str, exp_id: str) -> str:
    """The UI's runs table of experiment `exp_id` (MLflow's hash route), sorted by mix, no shared-view banner."""
    query = urlencode({"workflowType": "machine_learning", **_ORDER})
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs?{query}"


def prompts_url(base: str) -> str:
    """The UI's Prompt Registry page (the rewrite instructions, pairaug-rewrite-<task>)."""
    return f"{base.rstrip('/')}/#/prompts"
