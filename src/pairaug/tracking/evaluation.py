"""What an evaluation logs into its MLflow run: the flat metric names of its AUCs, and the zero-shot ROC
figure (drawn here, apart from the run bookkeeping of pairaug.tracking.runs)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlflow import MlflowClient


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


def log_eval_metrics(client: MlflowClient, run_id: str, result: dict, roc: list[dict], title: str) -> None:
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
