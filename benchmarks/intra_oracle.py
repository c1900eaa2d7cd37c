"""The ceiling of IntraAug's measures on the phantom: what a perfect edit would score.

    python benchmarks/intra_oracle.py [REPO]     # after `dvc repro intra-check` (default: this repository)

The phantom can redraw a valid patient's film with other findings (the same anatomy and noise seed), which
no generator can be asked for on real data. This script takes the IntraAug rewrites of valid reports that
intra-sweep edits (data/rewritten/intra_valid.parquet), redraws each source film with the findings y' states,
and scores those "oracle" edits with the same pixel probe (fit on the pool) and scorer as metrics/intra.json:
the changed-finding AUC and cos(f(x'), f(x)) a perfect editor reaches. Phantom data only.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pairaug.data.images import load_gray
from pairaug.data.phantom import FINDINGS, iter_studies, render
from pairaug.data.report_text import Finding
from pairaug.data.schema import read_pairs
from pairaug.measurement.edit_readout import fit_readout_probe, read_edits, reads_new
from pairaug.models.scorer import load_scorer

SIDED = {"Pleural Effusion": "bilateral", "Edema": "bilateral"}


def main(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    if params["data"]["source"] != "phantom":
        sys.exit("intra_oracle: the oracle edit needs the phantom (data.source: phantom)")
    pairs = read_pairs(repo / "data/prepared/pairs.parquet").set_index("pair_id")
    edits = pd.read_parquet(repo / "data/rewritten/intra_valid.parquet").query("status == 'ok'").reset_index(drop=True)
    ph = params["data"]["phantom"]
    studies = {s.study_id: s for s in iter_studies(params["seed"], "valid", ph["valid_patients"], ph["max_studies"],
                                                   ph["population"], ph["acquisition_shift"])}
    src = pairs.loc[edits["source_pair_id"]].reset_index()
    oracle = []
    for (_, e), (_, s) in zip(edits.iterrows(), src.iterrows()):
        study = studies[s["study_id"]]
        kept = {f.name: f for f in study.findings}
        findings = [kept.get(n, Finding(n, "moderate", SIDED.get(n, "right"))) for n in FINDINGS if pd.notna(e.get(n)) and e.get(n) == 1]
        oracle.append(render(dataclasses.replace(study, findings=findings), params["data"]["image_size"]))
    oracle = np.stack(oracle)
    films = np.stack([load_gray(repo / "data/prepared" / rel) for rel in src["image"]])
    probe, thresholds = fit_readout_probe(repo / "data/pool/pairs.parquet")
    read = read_edits(probe, oracle, films, src, edits)
    scorer = load_scorer(repo / "models/scorer")
    cos = float(np.mean(np.sum(scorer.encode_images(oracle) * scorer.encode_images(films), axis=1)))
    share = float(np.nanmean(reads_new(probe, thresholds, oracle, src, edits)[1]))
    print(f"oracle edits of {len(oracle)} valid films: changed-finding AUC {read['changed_mean_auc']:.3f} "
          f"(source film {read['changed_source_film_mean_auc']:.3f}), unchanged {read['unchanged_mean_auc']:.3f}, "
          f"cos(f(x'), f(x)) {cos:.3f}, change_read {share:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
