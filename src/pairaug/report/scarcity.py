"""The scarcity curve: the ablation at several target train sizes, one line per mix with its CI band.

`pairaug curve run --sizes 25 50 100 200` runs one DVC experiment per size (`dvc exp run --temp -S
data.phantom.train_patients=N -n curve-N`: each in a temporary copy, the pool, scorer and generator
restored from DVC's run cache), then reads each experiment's `metrics/ablation.json` and
`metrics/data.json` from its git ref and writes `metrics/scarcity.json` (every point with its CIs),
`metrics/scarcity_{zeroshot,probe_10}.json` (DVC plots: one row per size and mix, a line per mix) and
`metrics/scarcity.png` (zero-shot mean AUC and probe-10 % AUC against the number of real train pairs,
bands = the bootstrap CIs).
"""

from __future__ import annotations

from pathlib import Path

from pairaug.io import atomic_path, write_json
from pairaug.layout import ABLATION_JSON, DATA_METRICS
from pairaug.report.experiments import read_experiment_json, run_temp_experiment

PANELS = (("zeroshot", "zero-shot mean AUC"), ("probe_10", "linear probe 10 % mean AUC"))
KINDS = {"zeroshot": "zeroshot", "probe_10": "probe 10%"}  # panel → the report's score kind
EXPERIMENT = "curve-{size}"


def point(ablation: dict, data: dict) -> dict:
    """One size of the curve: real train pairs; per mix the two panels' estimate and bootstrap CI (from the
    report's table: `zeroshot` and `probe 10%`, each with its label mean); per panel the report's paired
    comparisons of PairAug with each baseline (difference, CI, Holm p, verdict), as the report wrote them."""
    out = {"real_train_pairs": int(data["splits"]["train"]["pairs"]),
           "train_patients": int(data["splits"]["train"]["patients"]), "mixes": {}, "pairaug_vs": {}}
    for mix, row in ablation["table"].items():
        out["mixes"][mix] = {"role": row.get("role"),
                             **{panel: _estimate((row.get(kind) or {}).get("mean")) for panel, kind in KINDS.items()}}
    for panel, kind in KINDS.items():
        out["pairaug_vs"][panel] = {v["baseline"]: {k: v.get(k) for k in ("delta", "ci", "p_holm", "verdict")}
                                    for v in ablation.get("verdicts", []) if v.get("measure") == kind}
    return out


def _estimate(stat: dict | None) -> dict | None:
    if not stat or stat.get("auc") is None:
        return None
    lo, hi = stat["ci"] if stat.get("ci") else (stat["auc"], stat["auc"])
    return {"mean": float(stat["auc"]), "ci_low": float(lo), "ci_high": float(hi)}


def plot_rows(points: list[dict], panel: str = "zeroshot") -> list[dict]:
    """Rows for `dvc plots show` (long format, template `.dvc/plots/by_mix.json`: a line per mix):
    {mix, real_train_pairs, auc, ci_low, ci_high}, by size."""
    rows = []
    for p in sorted(points, key=lambda p: p["real_train_pairs"]):
        for mix, panels in p["mixes"].items():
            if panels.get(panel):
                est = panels[panel]
                rows.append({"mix": mix, "real_train_pairs": p["real_train_pairs"], "auc": round(est["mean"], 5),
                             "ci_low": round(est["ci_low"], 5), "ci_high": round(est["ci_high"], 5)})
    return rows


def curve_figure(points: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: p["real_train_pairs"])
    mixes = list(dict.fromkeys(m for p in points for m in p["mixes"]))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 4.2))
    for ax, (panel, title) in zip(axes, PANELS):
        for mix in mixes:
            xs, est = zip(*[(p["real_train_pairs"], p["mixes"].get(mix, {}).get(panel)) for p in points])
            keep = [i for i, e in enumerate(est) if e]
            if not keep:
                continue
            x = [xs[i] for i in keep]
            reference = any(p["mixes"].get(mix, {}).get("role") == "reference" for p in points)
            style = {"ls": ":", "color": "gray"} if reference else {"lw": 2.2 if mix == "pairaug" else 1.3}
            line, = ax.plot(x, [est[i]["mean"] for i in keep], marker="o", ms=3, label=mix, **style)
            ax.fill_between(x, [est[i]["ci_low"] for i in keep], [est[i]["ci_high"] for i in keep],
                            color=line.get_color(), alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("real train pairs (target)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)


def curve_table(points: list[dict], panel: str = "zeroshot") -> str:
    """Markdown: a row per size, PairAug's estimate [CI] and its paired difference [CI] and verdict against
    each baseline the report compared it with."""
    points = sorted(points, key=lambda p: p["real_train_pairs"])
    baselines = list(dict.fromkeys(b for p in points for b in p.get("pairaug_vs", {}).get(panel, {})))
    head = ["real train pairs (patients)", "pairaug", *[f"− {b}" for b in baselines]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        est = p["mixes"].get("pairaug", {}).get(panel)
        cells = [f"{p['real_train_pairs']} ({p['train_patients']})",
                 f"{est['mean']:.3f} [{est['ci_low']:.3f}, {est['ci_high']:.3f}]" if est else "–"]
        for b in baselines:
            c = p.get("pairaug_vs", {}).get(panel, {}).get(b)
            cells.append(f"{c['delta']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] {c['verdict']}"
                         if c and c.get("delta") is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_curve(points: list[dict], out_dir: str | Path) -> None:
    """`out_dir`/scarcity.json (every point with its CIs), scarcity_<panel>.json (DVC plots: a row per size
    and mix), scarcity.md (PairAug against each baseline per size) and scarcity.png."""
    out_dir = Path(out_dir)
    write_json(out_dir / "scarcity.json", {"points": sorted(points, key=lambda p: p["real_train_pairs"])})
    for panel, _ in PANELS:
        write_json(out_dir / f"scarcity_{panel}.json", plot_rows(points, panel))
    tables = [f"### {title}\n\n{curve_table(points, panel)}" for panel, title in PANELS]
    with atomic_path(out_dir / "scarcity.md") as tmp:
        Path(tmp).write_text("\n".join(tables))
    curve_figure(points, out_dir / "scarcity.png")


# ------------------------------------------------------------------------------ DVC experiments


def run_experiment(size: int, root: Path, extra: list[str]) -> None:
    """One size as a DVC experiment in a temporary copy (`dvc exp run --temp`)."""
    run_temp_experiment(root, EXPERIMENT.format(size=size), [f"data.phantom.train_patients={size}", *extra],
                        f"curve: data.phantom.train_patients={size}")


def experiment_file(root: Path, size: int, rel: str) -> dict:
    """A committed metrics file of the experiment `curve-<size>`, read from its git ref."""
    return read_experiment_json(root, EXPERIMENT.format(size=size), rel,
                                hint=f"run `pairaug curve run --sizes {size}`")


def collect(root: Path, sizes: list[int]) -> list[dict]:
    return [point(experiment_file(root, n, ABLATION_JSON), experiment_file(root, n, DATA_METRICS))
            for n in sizes]
