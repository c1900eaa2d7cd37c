"""Content retention in metrics/rewrite.json: judged sentence by sentence, and enforced for `rules`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pairaug.data.schema import empty_labels, pairs_frame
from pairaug.errors import PairaugError, ParamError
from pairaug.params import section
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.retention import compare, summarise
from pairaug.rewrite.run import run_rewrite

SOURCE = ("FINDINGS: Small left pleural effusion. Right PICC tip in the SVC. Calcified granuloma. No pneumothorax. "
          "IMPRESSION: Small left pleural effusion.")


def test_compare_counts_kept_sentences_and_findings():
    good = "FINDINGS: No pleural effusion. Right PICC tip in the SVC. Calcified granuloma. No pneumothorax."
    r = compare(SOURCE, good, "inter")
    assert r.intent and not r.contradiction
    assert (r.must_keep, r.kept, r.sentence_retention, r.nonlabel_retention) == (3, 3, 1.0, 1.0)
    # A rewrite that rewrites everything from templates keeps nothing the task need not change.
    templated = "FINDINGS: No pleural effusion. No pneumothorax. IMPRESSION: No acute cardiopulmonary process."
    r = compare(SOURCE, templated, "inter")
    assert r.kept == 1 and r.nonlabel_retention == 0.0 and r.retention < 0.5
    # Kept "small left pleural effusion" next to an edited "No pleural effusion." contradicts.
    bad = "FINDINGS: No pleural effusion. Right PICC tip in the SVC. Calcified granuloma. IMPRESSION: Small left pleural effusion."
    assert compare(SOURCE, bad, "inter").contradiction


def test_compare_paraphrase_needs_every_fact_and_other_words():
    same = compare(SOURCE, SOURCE, "paraphrase")
    assert same.label_retention == 1.0 and not same.intent  # not reworded
    reworded = ("FINDINGS: There is a small left pleural effusion. Right PICC tip in the SVC. Calcified granuloma. "
                "There is no pneumothorax. IMPRESSION: Small left pleural effusion.")
    assert compare(SOURCE, reworded, "paraphrase").intent
    lossy = compare(SOURCE, "FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion.", "paraphrase")
    assert lossy.label_retention < 1.0 and lossy.nonlabel_retention == 0.0 and not lossy.intent
    assert summarise([("a", lossy), ("b", same)])["lowest"][0]["source_pair_id"] == "a"


def _pairs(tmp_path, reports: dict[str, str]):
    rows = [{"pair_id": pid, "patient_id": f"p-{pid}", "study_id": pid, "split": "train", "image": f"images/{pid}.png",
             "report": text, "view": "PA", **empty_labels(), "label_source": "labeler"} for pid, text in reports.items()]
    path = tmp_path / "pairs.parquet"
    pairs_frame(rows).to_parquet(path)
    return path


def test_low_retention_fails_the_stage_naming_the_reports(tmp_path):
    long = ("EXAMINATION: CHEST PA AND LATERAL. INDICATION: Cough. COMPARISON: ___. FINDINGS: The lungs are clear. "
            "Heart size is normal. No pleural effusion. No pneumothorax. Mild scoliosis. Calcified granuloma. "
            "IMPRESSION: No acute cardiopulmonary process.")
    pairs = _pairs(tmp_path, {"long-1": long, "short-1": SOURCE})
    # max_words 14: the long report loses most of what inter need not change.
    cfg = section(RewriteConfig, {"rewrite": {"max_words": 14, "min_retention": 0.9, "tasks": ["inter"]}}, "rewrite")
    with pytest.raises(PairaugError) as e:
        run_rewrite(cfg, 0, pairs, tmp_path / "out", tmp_path / "m.json", progress=False)
    msg = str(e.value)
    assert "long-1" in msg and "rewrite.min_retention = 0.9" in msg and "LLM backend" in msg
    assert "short-1" not in msg.split("lowest reports:")[1].split(")")[0]  # only the reports below the minimum
    # Nothing is lost: outputs and metrics were written before the stage failed.
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["tasks"]["inter"]["retention"]["retention_mean"] < 0.9
    assert len(pd.read_parquet(tmp_path / "out" / "inter.parquet")) == 2
    # The same run passes with the minimum the figures allow.
    ok = section(RewriteConfig, {"rewrite": {"max_words": 14, "min_retention": 0.0, "tasks": ["inter"]}}, "rewrite")
    assert run_rewrite(ok, 0, pairs, tmp_path / "out2", None, progress=False)["ok"] == 2


def test_min_retention_is_validated():
    with pytest.raises(ParamError, match="rewrite.min_retention"):
        section(RewriteConfig, {"rewrite": {"min_retention": 1.5}}, "rewrite")
