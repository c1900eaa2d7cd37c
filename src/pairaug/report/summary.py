"""`metrics/summary.json`: the handful of numbers an experiment is compared on, the pipeline's only DVC
`metrics:` file (the detailed JSONs under metrics/ are plain outputs), so `dvc exp show` and `dvc metrics
diff` show these and nothing else.

Short keys keep `dvc exp show` narrow (a column is named by its key path, e.g. `zs.pairaug`):

- `zs`, `zs_lo`, `zs_hi`: zero-shot mean AUC per mix (seeds combined as in the ablation table) and its CI;
- `probe1`, `probe10`, `probe100`: linear-probe mean AUC per mix at 1 / 10 / 100 % of the train labels;
- `vs`: PairAug's paired zero-shot difference from each baseline (the ablation's verdict rows);
- `checks`: the priors on the target's valid split (scorer's matched − shuffled cosine gap, generator's
  probe AUC) and prune's calibrated τ;
- `kept`: synthetic pairs per branch that passed pruning.

Wall time is not here: it differs run to run, and these bytes follow from params and seed alone. Each
MLflow run's duration (open while the model trains) carries it.
"""

from __future__ import annotations

from pairaug.measurement.scores import ZEROSHOT_KIND

PROBES = {"probe1": "probe 1%", "probe10": "probe 10%", "probe100": "probe 100%"}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _mean(row: dict, kind: str) -> dict | None:
    return (row.get(kind) or {}).get("mean")


def experiment_summary(report: dict, priors: dict, prune: dict) -> dict:
    """report: metrics/ablation.json; priors: metrics/priors.json; prune: metrics/prune.json."""
    table = report.get("table", {})
    out: dict = {"zs": {}, "zs_lo": {}, "zs_hi": {}, **{key: {} for key in PROBES}}
    for mix, row in table.items():
        zs = _mean(row, ZEROSHOT_KIND)
        if zs is not None:
            out["zs"][mix] = _r(zs["auc"])
            if zs.get("ci"):
                out["zs_lo"][mix], out["zs_hi"][mix] = _r(zs["ci"][0]), _r(zs["ci"][1])
        for key, kind in PROBES.items():
            probe = _mean(row, kind)
            if probe is not None:
                out[key][mix] = _r(probe["auc"])
    out["vs"] = {v["baseline"]: _r(v["delta"]) for v in report.get("verdicts", []) if v["measure"] == ZEROSHOT_KIND}
    generator = priors.get("generator") or {}
    out["checks"] = {"scorer_gap": _r((priors.get("scorer") or {}).get("gap")),
                     "generator_auc": _r(generator.get("mean_auc_checked")),
                     "tau": _r((prune.get("tau") or {}).get("tau"))}
    out["kept"] = {branch: int(b["kept"]) for branch, b in sorted((prune.get("branches") or {}).items())}
    return out
