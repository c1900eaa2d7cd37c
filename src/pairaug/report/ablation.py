"""The `report` stage's logic: the ablation table over mixes, and the verdict PairAug vs each baseline.

The table is mix × zero-shot mean AUC (CheXpert competition labels), per-label zero-shot AUC and
linear-probe mean AUC at each train fraction, as mean ± std over `pretrain.seeds`. The verdict
compares PairAug with every other mix on the zero-shot mean AUC and says whether the difference is
larger than the seed-to-seed noise (Welch's t-test where there are ≥ 2 seeds per mix).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pairaug.data.schema import COMPETITION_LABELS

PAIRAUG = "pairaug"


def load_eval(metrics_dir: str | Path, mixes: list[str]) -> dict[str, dict]:
    out = {}
    for mix in mixes:
        path = Path(metrics_dir) / f"{mix}.json"
        if path.exists():
            out[mix] = json.loads(path.read_text())
    return out


def _seed_values(result: dict, *keys: str) -> list[float]:
    values = []
    for seed_result in result["seeds"].values():
        v = seed_result
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(float(v))
    return values


def _stat(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def ablation(results: dict[str, dict], fractions: list[str]) -> dict:
    """Per mix: zero-shot mean / per label, linear probe per fraction (mean ± std over seeds)."""
    table = {}
    for mix, res in results.items():
        table[mix] = {
            "zeroshot_mean": _stat(_seed_values(res, "zeroshot", "mean_auc")),
            "zeroshot": {label: _stat(_seed_values(res, "zeroshot", "auc", label)) for label in COMPETITION_LABELS},
            "linear_probe": {f: _stat(_seed_values(res, "linear_probe", "mean_auc", f)) for f in fractions},
        }
    return table


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value (None with fewer than 2 values on a side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdicts(table: dict) -> list[dict]:
    """PairAug against every other mix on the zero-shot mean AUC."""
    if PAIRAUG not in table or table[PAIRAUG]["zeroshot_mean"] is None:
        return []
    ours = table[PAIRAUG]["zeroshot_mean"]
    out = []
    for mix, row in table.items():
        if mix == PAIRAUG or row["zeroshot_mean"] is None:
            continue
        theirs = row["zeroshot_mean"]
        delta = ours["mean"] - theirs["mean"]
        p = welch_p(ours["values"], theirs["values"])
        noise = math.hypot(ours["std"], theirs["std"])
        if p is not None:
            significant = p < 0.05
        else:
            significant = False  # one seed: no estimate of the noise, so no claim either way
        verdict = ("beats" if delta > 0 else "loses to") if significant else (
            "ahead of (within noise)" if delta > 0 else "behind (within noise)")
        out.append({"baseline": mix, "delta": delta, "p_value": p, "seed_noise": noise, "verdict": verdict,
                    "significant": significant})
    return out


def _fmt(stat: dict | None) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat["n"] > 1 else f"{stat['mean']:.3f}"


def ablation_markdown(table: dict, fractions: list[str], verdict_rows: list[dict], seeds: int) -> str:
    short = {"Atelectasis": "Atel.", "Cardiomegaly": "Cardio.", "Consolidation": "Consol.", "Edema": "Edema",
             "Pleural Effusion": "Effusion"}
    head = ["mix", "zero-shot mean AUC", *[short[label] for label in COMPETITION_LABELS],
            *[f"probe {f}" for f in fractions]]
    lines = [f"Mean ± std over {seeds} seed(s); zero-shot and probe AUCs on the phantom test split "
             "(probe: mean over the five CheXpert competition labels).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mix, row in table.items():
        cells = [f"`{mix}`", _fmt(row["zeroshot_mean"]), *[_fmt(row["zeroshot"][label]) for label in COMPETITION_LABELS],
                 *[_fmt(row["linear_probe"][f]) for f in fractions]]
        lines.append("| " + " | ".join(cells) + " |")
    if verdict_rows:
        lines += ["", "PairAug (zero-shot mean AUC) against each baseline:", ""]
        for v in verdict_rows:
            p = f"p = {v['p_value']:.3f}" if v["p_value"] is not None else "one seed, no test"
            lines.append(f"- vs `{v['baseline']}`: {v['delta']:+.3f} ({p}) → PairAug {v['verdict']}")
    return "\n".join(lines) + "\n"


def write_report(mixes: list[str], seeds: int, fractions: list[str], eval_dir: str | Path,
                 out_md: str | Path, out_json: str | Path) -> dict:
    """Gather metrics/eval/<mix>.json into the ablation table (Markdown + JSON)."""
    from pairaug.io import atomic_path, write_json

    results = load_eval(eval_dir, mixes)
    missing = [m for m in mixes if m not in results]
    table = ablation(results, fractions)
    verdict_rows = verdicts(table)
    write_json(out_json, {"table": table, "verdicts": verdict_rows, "missing_mixes": missing, "seeds": seeds})
    with atomic_path(out_md) as tmp:
        tmp.write_text(ablation_markdown(table, fractions, verdict_rows, seeds))
    return {"table": table, "verdicts": verdict_rows}
