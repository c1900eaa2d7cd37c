"""Replication: does a verdict survive a rerun? Two ablations side by side, row by row.

`pairaug replicate` reruns the ablation as a DVC experiment (`dvc exp run --temp`) with other replicate
seeds — the same data and priors, new draws of everything the method draws — or with whatever `-S`
params it is given (`-S seed=1` redraws the dataset itself: new patients, pool and priors), then
compares that experiment's `metrics/ablation.json` with the workspace's. For each verdict row (a measure
and a baseline) it says whether each run's difference lies in the other run's CI and in the other run's
rerun band (where a rerun with new replicate seeds on the same data lands, `stats.rerun_half_width`),
and whether the verdicts disagree in direction ("beats" in one, "loses to" in the other).
"""

from __future__ import annotations

from pathlib import Path

from pairaug.io import atomic_path, write_json

SIDES = ("this", "other")


def _inside(value: float, ci: list[float] | None) -> bool | None:
    return None if ci is None else bool(ci[0] <= value <= ci[1])


def compare(this: dict, other: dict) -> dict:
    """Rows (measure, baseline) present in both ablations: each run's delta, CI and verdict, whether each
    delta lies in the other's CI, and whether the verdicts point opposite ways; with the counts."""
    index = {(v["measure"], v["baseline"]): v for v in other.get("verdicts", [])}
    rows = []
    for a in this.get("verdicts", []):
        b = index.get((a["measure"], a["baseline"]))
        if b is None or a.get("delta") is None or b.get("delta") is None:
            continue
        rows.append({"measure": a["measure"], "baseline": a["baseline"],
                     "this": {k: a.get(k) for k in ("delta", "ci", "rerun_interval", "verdict")},
                     "other": {k: b.get(k) for k in ("delta", "ci", "rerun_interval", "verdict")},
                     "this_in_other": _inside(a["delta"], b.get("ci")),
                     "other_in_this": _inside(b["delta"], a.get("ci")),
                     "this_in_other_rerun": _inside(a["delta"], b.get("rerun_interval")),
                     "other_in_this_rerun": _inside(b["delta"], a.get("rerun_interval")),
                     "flip": {a["verdict"], b["verdict"]} == {"beats", "loses to"}})
    by_measure: dict[str, dict] = {}
    for r in rows:
        m = by_measure.setdefault(r["measure"], {"rows": 0, "outside": 0, "outside_rerun": 0, "flips": 0,
                                                 "same_verdict": 0})
        m["rows"] += 1
        m["outside"] += int(r["this_in_other"] is False or r["other_in_this"] is False)
        m["outside_rerun"] += int(r["this_in_other_rerun"] is False or r["other_in_this_rerun"] is False)
        m["flips"] += int(r["flip"])
        m["same_verdict"] += int(r["this"]["verdict"] == r["other"]["verdict"])
    return {"rows": rows, "by_measure": by_measure}


def _cell(side: dict) -> str:
    ci = side.get("ci")
    interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
    return f"{side['delta']:+.3f}{interval} {side['verdict']}"


def _yes(flag: bool | None) -> str:
    return "–" if flag is None else "yes" if flag else "**no**"


def replication_markdown(result: dict, this_name: str, other_name: str) -> str:
    lines = [f"PairAug − each baseline in two runs, first `{this_name}` (the workspace), second `{other_name}` "
             "(Δ mean AUC [95 % CI] verdict; \"in CI\": the run's Δ lies inside the other run's CI; \"in rerun\": "
             "inside the other run's rerun band, where all of a measure's differences rerun with new replicate "
             "seeds on the same data land together with 95 % probability — the check that fits a replication; a "
             "redrawn dataset has no such band).",
             "", f"| measure | baseline | {this_name} | {other_name} | first Δ in second CI | second Δ in first CI "
             "| both in rerun | verdicts opposite |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rerun = (None if None in (r["this_in_other_rerun"], r["other_in_this_rerun"])
                 else r["this_in_other_rerun"] and r["other_in_this_rerun"])
        lines.append(f"| {r['measure']} | `{r['baseline']}` | {_cell(r['this'])} | {_cell(r['other'])} | "
                     f"{_yes(r['this_in_other'])} | {_yes(r['other_in_this'])} | {_yes(rerun)} | "
                     f"{'**yes**' if r['flip'] else 'no'} |")
    lines += ["", "| measure | rows | a Δ outside the other CI | a Δ outside the other rerun band | same verdict "
              "| opposite verdicts |", "|---|---|---|---|---|---|"]
    for measure, m in result["by_measure"].items():
        lines.append(f"| {measure} | {m['rows']} | {m['outside']} | {m['outside_rerun']} | {m['same_verdict']} | "
                     f"{m['flips']} |")
    return "\n".join(lines) + "\n"


def write_replication(result: dict, this_name: str, other_name: str, out_md: str | Path) -> str:
    """Markdown to `out_md` and the rows to the .json beside it; returns the Markdown."""
    md = replication_markdown(result, this_name, other_name)
    out_md = Path(out_md)
    write_json(out_md.with_suffix(".json"), {"this": this_name, "other": other_name, **result})
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(md)
    return md
