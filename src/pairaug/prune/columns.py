"""The branches prune reads and the columns of its outputs."""

from __future__ import annotations

from pairaug.data.schema import LABELS

BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only", "paraphrase")
SYNTHETIC_BRANCHES: tuple[str, ...] = ("inter", "intra", "image_only")  # branches with a generated manifest
ALIGNMENT_BRANCHES: tuple[str, ...] = ("inter", "image_only", "paraphrase")  # kept by S_a > τ
REWRITE_TASK = {"inter": "inter", "intra": "intra", "paraphrase": "paraphrase"}  # branch → data/rewritten/<task>
SCORES: tuple[str, ...] = ("s_a", "s1", "s2", "s3")
THRESHOLDS: tuple[str, ...] = ("tau", "thr_s1", "thr_s2", "thr_s3")  # the threshold each score must exceed
TEXT_COLUMNS: tuple[str, ...] = ("pair_id", "branch", "source_pair_id", "patient_id", "report", "source_report",
                                 "image", "image_sha256")
# change_read: intra only, the select probe's reading of the change (NaN: no readable finding changed)
PAIR_COLUMNS: tuple[str, ...] = (*TEXT_COLUMNS, "replicate", *SCORES, *THRESHOLDS, "change_read", *LABELS,
                                 "review")  # review: the decision applied
CANDIDATE_COLUMNS: tuple[str, ...] = (*PAIR_COLUMNS, "kept", "reason")
MANIFEST_REQUIRED: tuple[str, ...] = ("pair_id", "source_pair_id", "report", "image", "image_sha256")
