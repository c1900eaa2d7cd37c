"""The offline `rules` rewriter: labels it means are labels it writes, on phantom and real wording."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pairaug.data import phantom
from pairaug.data.labeler import label_report
from pairaug.data.schema import LABELS, empty_labels, pairs_frame
from pairaug.errors import ParamError
from pairaug.params import section
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.prompts import DEFAULT_PROMPTS, get_prompt
from pairaug.rewrite.rules import (
    _NEG_NOUN,
    Item,
    RulesRewriter,
    _generic_sentences,
    _negative_list,
    _sentence_labels,
    parse_state,
)
from pairaug.rewrite.run import COLUMNS, limit_words, run_rewrite


@pytest.fixture(scope="module")
def phantom_reports() -> list[tuple[str, str]]:
    studies = list(phantom.iter_studies(0, "train", 150))
    return [(s.study_id, s.report) for s in studies]


@pytest.fixture(scope="module")
def rewrites(phantom_reports) -> dict[str, list]:
    rw = RulesRewriter(seed=0, max_words=50)
    return {task: [(report, rw.rewrite(task, report, sid)) for sid, report in phantom_reports]
            for task in ("inter", "intra", "paraphrase")}


def test_phantom_label_statistics(rewrites):
    share = {}
    for task, pairs in rewrites.items():
        changed = [label_report(a.text) != label_report(src) for src, a in pairs]
        share[task] = float(np.mean(changed))
        for src, a in pairs:
            assert len(a.text.split()) <= 50, a.text
            assert label_report(a.text) == a.intended, (task, src, a.text)  # writes what it means
            assert a.text.startswith("FINDINGS: ") and " IMPRESSION: " in a.text  # the dataset's style
    assert share["inter"] >= 0.95
    assert share["paraphrase"] == 0.0  # every paraphrase keeps every label
    assert share["intra"] >= 0.6
    reworded = np.mean([a.text != src for src, a in rewrites["paraphrase"]])
    assert reworded >= 0.95


def test_inter_flips_findings_and_intra_keeps_the_patient(rewrites):
    flips = 0
    for src, a in rewrites["inter"]:
        before, after = label_report(src), label_report(a.text)
        flips += any((before[f] == 1) != (after[f] == 1) for f in phantom.FINDINGS)
    assert flips / len(rewrites["inter"]) >= 0.95
    # Intra keeps the side of findings that persist (same patient).
    kept_side = total = 0
    for src, a in rewrites["intra"]:
        s0, s1 = parse_state(src), parse_state(a.text)
        for label in ("Pleural Effusion", "Pneumothorax", "Atelectasis", "Consolidation"):
            if label in s0 and label in s1 and s0[label].status == 1 == s1[label].status and s0[label].side:
                total += 1
                kept_side += s0[label].side == s1[label].side
    assert total > 10 and kept_side == total


def test_deterministic_per_seed_pair_and_task(phantom_reports):
    sid, report = phantom_reports[3]
    a, b = RulesRewriter(0), RulesRewriter(0)
    for task in ("inter", "intra", "paraphrase"):
        assert a.rewrite(task, report, sid) == b.rewrite(task, report, sid)
    texts = {RulesRewriter(seed).rewrite("inter", report, sid).text for seed in range(8)}
    assert len(texts) > 1


def test_real_report_wording_degrades_gracefully(real_cxr):
    reports = pd.read_csv(real_cxr / "manifest.csv")["report"]
    rw = RulesRewriter(0)
    for i, report in enumerate(reports):
        for task in ("inter", "intra", "paraphrase"):
            a = rw.rewrite(task, report, f"real-{i}")
            assert len(a.text.split()) <= 50
            assert label_report(a.text) == a.intended, (report, a.text)
        assert label_report(rw.rewrite("paraphrase", report, f"real-{i}").text) == label_report(report)
        assert label_report(rw.rewrite("inter", report, f"real-{i}").text) != label_report(report)


def test_generic_sentences_say_exactly_their_label():
    for label in LABELS[1:]:
        for status in (1, 0, -1):
            for sev, side in ((None, None), ("moderate", "left"), ("mild", "right")):
                item = Item(label, status, sev if status else None, side if status else None)
                for text in _generic_sentences(item):
                    got = _sentence_labels(text)
                    if label == "Cardiomegaly" and text == "Cardiomediastinal silhouette is within normal limits.":
                        continue  # a phantom sentence the writer rejects (it states the mediastinum)
                    assert got == {label: status}, (label, status, text, got)
    assert _sentence_labels(_negative_list([Item(k, 0) for k in _NEG_NOUN])) == dict.fromkeys(_NEG_NOUN, 0)


def test_limit_words_cuts_at_a_sentence_boundary():
    text = " ".join(f"Sentence {i} has five words." for i in range(15))  # 75 words
    cut, was_cut = limit_words(text, 50)
    assert was_cut and len(cut.split()) == 50 and cut.endswith("words.")
    cut, was_cut = limit_words(" ".join(["word"] * 60), 50)
    assert was_cut and len(cut.split()) == 50 and cut.endswith(".")
    assert limit_words("Short report.", 50) == ("Short report.", False)


def test_prompts_live_in_one_place_with_versions():
    assert "partial opposite meanings" in DEFAULT_PROMPTS["inter"]
    assert "patient's changes in symptom" in DEFAULT_PROMPTS["intra"]
    assert get_prompt("inter").sha != get_prompt("intra").sha
    assert get_prompt("inter", {"inter": "Other text."}).sha != get_prompt("inter").sha


def test_config_errors_name_the_key():
    with pytest.raises(ParamError, match="rewrite.backend"):
        section(RewriteConfig, {"rewrite": {"backend": "gpt"}}, "rewrite")
    with pytest.raises(ParamError, match="rewrite.openai.api_key_env") as e:
        section(RewriteConfig, {"rewrite": {"openai": {"api_key_env": "sk-abc123def456ghi789jkl"}}}, "rewrite")
    assert "sk-abc" not in str(e.value)  # a pasted key is not echoed
    with pytest.raises(ParamError, match="rewrite.azure.endpoint"):
        section(RewriteConfig, {"rewrite": {"backend": "azure"}}, "rewrite")
    with pytest.raises(ParamError, match="rewrite.sampling.temperature"):
        section(RewriteConfig, {"rewrite": {"sampling": {"temperature": 3}}}, "rewrite")


def test_stage_outputs_metrics_and_identical_bytes(tmp_path, phantom_reports):
    rows = [{"pair_id": sid, "patient_id": sid.rsplit("-s", 1)[0], "study_id": sid, "split": "train",
             "image": f"images/{sid}.png", "report": report, "view": "PA", **empty_labels(), "label_source": "dataset"}
            for sid, report in phantom_reports[:60]]
    rows.append({**rows[0], "pair_id": "short", "patient_id": "p-short", "report": "No change."})
    pairs = tmp_path / "pairs.parquet"
    pairs_frame(rows).to_parquet(pairs)
    cfg = section(RewriteConfig, {"rewrite": {"min_words": 5}}, "rewrite")
    metrics = run_rewrite(cfg, 0, pairs, tmp_path / "a", tmp_path / "a.json", progress=False)
    run_rewrite(cfg, 0, pairs, tmp_path / "b", tmp_path / "b.json", progress=False)
    for task in ("inter", "intra", "paraphrase"):
        a = (tmp_path / "a" / f"{task}.parquet").read_bytes()
        assert a == (tmp_path / "b" / f"{task}.parquet").read_bytes()
        df = pd.read_parquet(tmp_path / "a" / f"{task}.parquet")
        assert list(df.columns) == list(COLUMNS) and len(df) == 61
        assert df[list(LABELS)].dtypes.eq("Int8").all()
        assert set(df["model"]) == {"rules-v1"} and (df["prompt_tokens"] == 0).all()
        short = df.set_index("source_pair_id").loc["short"]
        assert short["status"] == "skipped_short" and pd.isna(short["report_new"])
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert metrics["skipped_short"] == 3 and metrics["ok"] == 180 and metrics["requests"] == 0
    assert metrics["tasks"]["inter"]["labels"]["changed_share"] >= 0.95
    assert metrics["tasks"]["paraphrase"]["labels"]["kept_share"] == 1.0
    assert metrics["tasks"]["inter"]["intent_match_share"] == 1.0
