"""DVC stage `report`: the ablation table over mixes (patient-bootstrap CIs, paired verdicts), a t-SNE of
real vs synthetic, and galleries."""

from pathlib import Path

import pandas as pd

from pairaug import layout
from pairaug.data.mixes import read_mixes
from pairaug.data.schema import read_pairs
from pairaug.io import read_json, write_json
from pairaug.models.scorer import load_scorer
from pairaug.params import load_params, section
from pairaug.report.ablation import ReportConfig, load_scores, write_report
from pairaug.report.figures import gallery_html, tsne_figure
from pairaug.report.roc import write_roc_by_label
from pairaug.report.summary import experiment_summary
from pairaug.stage import run_stage

PREPARED = Path(layout.PREPARED)
PRUNED = Path(layout.PRUNED_DIR)


def main() -> None:
    params = load_params()
    cfg = section(ReportConfig, params, "report")
    seed = params.get("seed", 0)
    priors, prune = read_json(layout.PRIORS_METRICS), read_json(layout.PRUNE_METRICS)  # before any write
    mixes = list(read_mixes(params))
    scores = load_scores(layout.EVAL, mixes)
    report = write_report(mixes, cfg, seed, layout.EVAL, layout.ABLATION_MD, layout.ABLATION_JSON, scores)
    write_roc_by_label(scores, layout.ROC)
    write_json(layout.SUMMARY, experiment_summary(report, priors, prune))

    real = read_pairs(PREPARED)
    train = real[real["split"] == "train"]
    real_images = {pid: PREPARED.parent / rel for pid, rel in zip(real["pair_id"], real["image"])}
    candidates = pd.read_parquet(layout.CANDIDATES)
    sets = {"real": _sample(train, PREPARED.parent, cfg.tsne_per_set, seed)}
    for branch in ("inter", "intra"):
        sets[branch] = _sample(candidates[candidates["branch"] == branch], PRUNED, cfg.tsne_per_set, seed)
    tsne_figure(load_scorer(layout.SCORER), sets, layout.TSNE_PLOT, seed)

    intra_manifest = Path(layout.INTRA_MANIFEST)
    source_branch = {}
    if intra_manifest.exists():
        m = pd.read_parquet(intra_manifest, columns=["pair_id", "source_image"])
        source_branch = {pid: intra_manifest.parent / rel for pid, rel in zip(m["pair_id"], m["source_image"])}
    for branch in sorted(candidates["branch"].unique()):
        gallery_html(branch, candidates, PRUNED, real_images, layout.gallery(branch), cfg.gallery_pairs,
                     seed, source_branch if branch == "intra" else None)


def _sample(df: pd.DataFrame, root: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    part = df.sample(n=min(n, len(df)), random_state=seed) if len(df) else df
    return [str(root / rel) for rel in part["image"]], part["report"].tolist()


if __name__ == "__main__":
    run_stage(main)
