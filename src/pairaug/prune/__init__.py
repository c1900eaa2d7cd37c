"""The `prune` stage's logic (PairAug step 4): score every synthetic candidate pair, keep the aligned ones.

Branches and their scores (all cosines between the scorer's embeddings, `f_img` / `f_txt`):

- `inter`, `image_only`, `paraphrase`: S_a = cos(f_img(x̃), f_txt(ỹ)); keep iff S_a > τ. τ is calibrated on
  the scorer in use (PairAug's 0.3 is on MedCLIP's scale; an embedded scorer's unrelated pairs average
  ≈ 0.4): the `prune.inter_tau_quantile` quantile of S_a over *mismatched* real valid pairs (each valid
  film with another film's report), so a kept pair aligns better than that share of unrelated pairings
  on any scorer. `prune.inter_tau` fixes τ by hand instead. The baselines go through the same rule so
  every augmentation mix is pruned alike. `paraphrase` pairs are the real train image with its
  paraphrased report (the text-only baseline).
- `intra` (x' edited image, y' its report, x / y the REAL image and report of the source pair):
  S1 = cos(f_img(x'), f_txt(y')), S2 = cos(f_img(x'), f_img(x)),
  S3 = cos(f_img(x') − f_img(x), f_txt(y') − f_txt(y)); keep iff S_k > μ_k / s − λ for k = 1, 2, 3,
  with μ_k the mean of S_k over all intra candidates (PairAug's code: s = 1.0, λ = 0.003). Each report has
  `intra.candidates` edits; of those that pass, the `prune.intra_per_report` best are kept (the others:
  reason "outranked"): by S1 + S2 + S3 (PairAug's ranking), or with `prune.intra_rank: change` by
  `change_read` first. The scorer's cosines barely see whether x' draws the change (on the default run
  S2 correlates about −0.5 with it), so `change_read` reads it: the share of the findings y' changed that the
  `select` pixel probe (fit on half of the public pool's patients, measurement/edit_readout.py) reads in
  x' as y' states them; with `prune.intra_min_change_read` a candidate below it is not kept.

Every distinct image and text is encoded once (one real image serves a paraphrase and an intra
candidate, one real report several intra candidates), in batches, in a fixed (sorted) order so a rerun
gives the same bytes. Outputs: `candidates.parquet` (every candidate with its scores, thresholds,
`kept` and `reason`) and `pairs.parquet` (the kept pairs of all branches in one schema; image paths
relative to the output folder).

Review decisions (`review/decisions.csv`, written by `pairaug review`) come last: a rejected pair is never
kept whatever its scores (and an intra candidate rejected leaves its report's place to the next best);
an accepted one keeps its score decision unless `prune.review.accepted_override` keeps it regardless. A
decision whose image sha256 is not the candidate's any more is stale: ignored, and listed in
metrics/prune.json and a log line. Each pair's applied decision is its `review` column.

The package, one concern a module: `config` (params), `columns`, `candidates` (manifests joined to their
source pairs and labels), `scores` (S_a, S1–S3, change_read), `tau`, `review` (decisions), `decide` (kept
and reason), `summary` (output schema, metrics), `plots`, `run` (`prune`, end to end).
"""

from pairaug.prune.candidates import Sources, load_candidates, read_manifest, read_rewritten_labels
from pairaug.prune.columns import (
    ALIGNMENT_BRANCHES,
    BRANCHES,
    CANDIDATE_COLUMNS,
    PAIR_COLUMNS,
    SCORES,
    SYNTHETIC_BRANCHES,
    THRESHOLDS,
)
from pairaug.prune.config import INTRA_RANKS, PruneConfig, ReviewConfig
from pairaug.prune.decide import score_candidates
from pairaug.prune.plots import plot_scores
from pairaug.prune.review import review_decisions
from pairaug.prune.run import prune
from pairaug.prune.scores import (
    alignment_scores,
    change_reads,
    cosine_rows,
    encode_unique,
    intra_scores,
    intra_thresholds,
)
from pairaug.prune.summary import finalize, summarize
from pairaug.prune.tau import calibrate_tau, derangement, replicate_tau, tau_summary

__all__ = [
    "ALIGNMENT_BRANCHES", "BRANCHES", "CANDIDATE_COLUMNS", "INTRA_RANKS", "PAIR_COLUMNS", "SCORES",
    "SYNTHETIC_BRANCHES", "THRESHOLDS", "PruneConfig", "ReviewConfig", "Sources", "alignment_scores",
    "calibrate_tau", "change_reads", "cosine_rows", "derangement", "encode_unique", "finalize", "intra_scores",
    "intra_thresholds", "load_candidates", "plot_scores", "prune", "read_manifest", "read_rewritten_labels",
    "replicate_tau", "review_decisions", "score_candidates", "summarize", "tau_summary",
]
