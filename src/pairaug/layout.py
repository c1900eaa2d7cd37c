"""The workspace's paths, relative to the repository root: the one place Python names them (dvc.yaml names
them for DVC). Stage scripts pass them to the library, whose functions take paths as arguments; the tools
that read a finished workspace (`pairaug review`, `audit`, `curve`, the MLflow lineage) look them up here.
tests/test_stage_paths.py checks that each path a stage script names is among its dvc.yaml deps or outs.
"""

from __future__ import annotations

# prepare, prepare-pool: the target's and the public pool's pairs (images beside them)
PREPARED_DIR = "data/prepared"
PREPARED = "data/prepared/pairs.parquet"
DATA_METRICS = "metrics/data.json"
SAMPLES_PLOT = "metrics/samples.png"
POOL_DIR = "data/pool"
POOL = "data/pool/pairs.parquet"
POOL_METRICS = "metrics/pool.json"

# rewrite: data/rewritten/<task>.parquet
REWRITTEN = "data/rewritten"
REWRITE_METRICS = "metrics/rewrite.json"
INTRA_REWRITES = "data/rewritten/intra.parquet"
INTRA_VALID_REWRITES = "data/rewritten/intra_valid.parquet"

# fit-scorer, fit-generator, check-priors
SCORER = "models/scorer"
SCORER_METRICS = "metrics/scorer.json"
GENERATOR = "models/generator"
GENERATOR_METRICS = "metrics/generator.json"
PRIORS_METRICS = "metrics/priors.json"

# the generation stages: data/synthetic/<branch>/manifest.parquet
SYNTHETIC = "data/synthetic"
INTRA_SYNTHETIC = "data/synthetic/intra"
INTRA_MANIFEST = "data/synthetic/intra/manifest.parquet"
GENERATION_WORK = "data/.work"  # resumable stages' chunks in progress: neither a dep nor an out
INTRA_SWEEP_METRICS = "metrics/intra_sweep.json"
INTRA_METRICS = "metrics/intra.json"


def synthetic(branch: str) -> str:
    return f"{SYNTHETIC}/{branch}"


# `pairaug review` writes the decisions, prune reads them
DECISIONS = "review/decisions.csv"

# prune, privacy
PRUNED_DIR = "data/pruned"
PRUNED = "data/pruned/pairs.parquet"
CANDIDATES = "data/pruned/candidates.parquet"
PRUNE_METRICS = "metrics/prune.json"
PRUNE_PLOT = "metrics/prune_scores.png"
PRIVACY_DIR = "data/privacy"
PRIVACY_TABLE = "data/privacy/images.parquet"
PRIVACY_METRICS = "metrics/privacy.json"
PRIVACY_PLOT = "metrics/privacy_distances.png"

# validate (Great Expectations' project is gx/ under GX_ROOT)
GX_ROOT = "."
VALIDATED = "data/validated"
VALIDATED_PAIRS = "data/validated/pairs.parquet"
GX_RESULT = "data/validated/result.json"
VALIDATE_METRICS = "metrics/validate.json"
DATASHEET_MD = "metrics/datasheet.md"
DATASHEET_JSON = "metrics/datasheet.json"


def mix_manifest(mix: str) -> str:
    """The validated synthetic pairs a mix trains on (written by `validate`, read by `pretrain@<mix>`)."""
    return f"{VALIDATED}/mixes/{mix}.parquet"


# pretrain@<mix>, evaluate@<mix>
def vlp(mix: str) -> str:
    return f"models/vlp/{mix}"


EVAL = "data/eval"


def eval_scores(mix: str) -> str:
    return f"{EVAL}/{mix}/scores.parquet"


def eval_metrics(mix: str) -> str:
    return f"metrics/eval/{mix}.json"


def eval_roc(mix: str) -> str:
    return f"metrics/eval/roc/{mix}.json"


# report
ABLATION_MD = "metrics/ablation.md"
ABLATION_JSON = "metrics/ablation.json"
REPLICATION_MD = "metrics/replication.md"  # `pairaug replicate`: two runs' verdicts side by side
ROC = "metrics/roc"
SUMMARY = "metrics/summary.json"
TSNE_PLOT = "metrics/tsne.png"


def gallery(branch: str) -> str:
    return f"data/report/gallery/{branch}.html"
