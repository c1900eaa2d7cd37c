"""The IntraAug gate: kept intra pairs whose x' does not show the findings y' changed fail `validate`.

Phantom films stand in for the edits: the "good editor" draws the same patient (same anatomy) with the
finding toggled, exactly the edit IntraAug is for; the broken editor (η = 1: nothing changes) returns
the source film itself. The probe that reads them is fit on a phantom pool of other patients, through
the same `fit_readout_probe` the validate stage uses (its `judge` half; prune selects with the `select`
half); the rules are the committed suite's.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pairaug.data.phantom import iter_studies, render
from pairaug.data.report_text import Finding, write_report
from pairaug.data.schema import LABELS, pairs_frame
from pairaug.errors import InputError, QualityGateError
from pairaug.hashing import file_digest
from pairaug.io import save_png
from pairaug.measurement.edit_readout import fit_readout_probe, reader_half
from pairaug.prune import change_reads
from pairaug.quality.checks import derive_checks
from pairaug.quality.gate import ValidateConfig, gate, run_suite

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def _write_films(root: Path, studies, split_of=lambda s: s.split) -> pd.DataFrame:
    rows = []
    for i, s in enumerate(studies):
        rel = f"images/{i}.png"
        save_png(render(s, SIZE), root / rel)
        rows.append({"pair_id": f"{root.name}{i}", "patient_id": s.patient_id, "study_id": s.study_id,
                     "split": split_of(s), "image": rel, "report": s.report, "view": "PA", **s.labels(),
                     "label_source": "phantom"})
    frame = pairs_frame(rows)
    frame.to_parquet(root / "pairs.parquet")
    return frame


def _toggled(study):
    """The same patient with a large pleural effusion added, or the one they have removed."""
    has = any(f.name == "Pleural Effusion" for f in study.findings)
    findings = [f for f in study.findings if f.name != "Pleural Effusion"] if has else \
        [*study.findings, Finding("Pleural Effusion", "large", "bilateral")]
    edited = dataclasses.replace(study, study_id=study.study_id + "-edit", findings=findings)
    edited.report = write_report(findings, np.random.default_rng(0))
    return edited


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("intra-gate")
    _write_films(root / "pool", list(iter_studies(0, "train", 240, population="pool")))  # 120 per reader
    sources = list(iter_studies(0, "train", 12))[:16]
    real = _write_films(root / "prepared", sources)
    shutil.copytree(REPO / "gx", root / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    return {"root": root, "real": real, "sources": sources, "readout": fit_readout_probe(root / "pool/pairs.parquet", reader="judge")}


def _intra_pairs(world: dict, editor: str) -> pd.DataFrame:
    folder = world["root"] / editor
    rows = []
    for (_, src), study in zip(world["real"].iterrows(), world["sources"]):
        edited = _toggled(study)
        film = render(edited if editor == "good" else study, SIZE)
        rel = f"images/{src['pair_id']}.png"
        save_png(film, folder / rel)
        rows.append({"pair_id": f"{editor}-{src['pair_id']}", "branch": "intra", "replicate": 0, "source_pair_id": src["pair_id"],
                     "patient_id": src["patient_id"], "report": edited.report, "source_report": src["report"],
                     "image": rel, "image_sha256": file_digest(folder / rel), **edited.labels(),
                     # prune's scores, all passing: the change is the only thing under test
                     "s_a": np.nan, "tau": np.nan, "s1": 0.9, "s2": 0.9, "s3": 0.9,
                     "thr_s1": 0.1, "thr_s2": 0.1, "thr_s3": 0.1, "review": ""})
    frame = pd.DataFrame(rows)
    for label in LABELS:
        frame[label] = frame[label].astype("Int8")
    return frame, folder


def _change_read_result(world: dict, editor: str) -> tuple[pd.DataFrame, dict, dict]:
    pairs, folder = _intra_pairs(world, editor)
    frame = derive_checks(pairs, folder, world["real"], world["root"] / "prepared", world["readout"])
    frame["near_copy"] = False  # the memorisation check's verdict (privacy stage): no edit here copies a train film
    result = run_suite(frame, world["root"], ValidateConfig(data_docs=False))
    [rule] = [r for r in result["results"] if r["expectation_config"]["kwargs"].get("column") == "change_read"]
    return frame, rule, result


def test_an_editor_that_draws_the_change_passes_the_gate(world):
    frame, rule, result = _change_read_result(world, "good")
    assert frame["change_read"].notna().all()  # every pair changed a finding the probe reads
    assert rule["success"], rule["result"]
    assert frame["change_read"].astype(float).mean() >= 0.7
    gate(result)  # and nothing else in the suite objects to these pairs


def test_a_broken_editor_that_changes_nothing_fails_the_gate(world):
    frame, rule, result = _change_read_result(world, "broken")
    assert not rule["success"]
    # the source film itself: the probe reads y's findings (a rare misreading aside), not y''s
    assert (frame["change_read"].astype(float) < ValidateConfig().min_change_read).mean() >= 0.9
    with pytest.raises(QualityGateError, match=r"1 of \d+ expectations.*: expect_column_values_to_be_between"
                                                r"\(0\.3 <= change_read, mostly 0\.5 where branch == 'intra'\): "
                                                r"1[5-6] of 16 rows \(pair_id broken-"):
        gate(result)


def test_change_read_is_only_for_intra_pairs(world):
    pairs, folder = _intra_pairs(world, "good")
    pairs.loc[0, "branch"] = "inter"
    frame = derive_checks(pairs, folder, world["real"], world["root"] / "prepared", world["readout"])
    assert frame["change_read"].isna()[0] and frame["change_read"].notna()[1:].all()
    # without a probe the fact is unknown, never made up
    assert derive_checks(pairs, folder, world["real"], world["root"] / "prepared")["change_read"].isna().all()


def test_prune_selects_the_edits_that_draw_the_change_and_the_gate_stops_an_editor_that_draws_none(world):
    """prune's `select` reader reads the good editor's change and not the broken one's: with
    prune.intra_min_change_read 0.5 the broken editor keeps no intra pair, which the suite's rule that
    every branch with candidates keeps a pair turns into a failed gate (not a vacuous pass)."""
    reads = {}
    for editor in ("good", "broken"):
        pairs, folder = _intra_pairs(world, editor)
        cands = pairs.assign(image_abs=[str(folder / rel) for rel in pairs["image"]])
        reads[editor] = change_reads(cands, world["root"] / "prepared/pairs.parquet", world["root"] / "pool/pairs.parquet")
    assert np.mean(reads["good"] >= 0.5) >= 0.7
    assert (reads["broken"] < 0.5).all()
    pairs, folder = _intra_pairs(world, "broken")
    kept = pairs[reads["broken"] >= 0.5]
    frame = derive_checks(kept, folder, world["real"], world["root"] / "prepared", world["readout"])
    frame["near_copy"] = pd.array([], dtype="boolean")
    result = run_suite(frame, world["root"], ValidateConfig(data_docs=False), branches_with_candidates=["intra"])
    [rule] = [r for r in result["results"] if r["expectation_config"]["type"] == "expect_column_distinct_values_to_contain_set"]
    assert not rule["success"]
    with pytest.raises(QualityGateError, match=r"expect_column_distinct_values_to_contain_set\(branch in \['intra'\]\): "
                                                r"no kept pair of branch\(es\) intra"):
        gate(result)


def test_the_select_and_judge_readers_are_fit_on_disjoint_patients():
    patients = pd.Series([f"p{i}" for i in range(400)])
    select, judge = reader_half(patients, "select"), reader_half(patients, "judge")
    assert not (select & judge).any() and (select | judge).all()
    assert 150 < select.sum() < 250  # about half each


def test_a_reader_with_no_films_in_its_half_is_a_clear_error(tmp_path):
    """A pool of one patient leaves one reader's half empty: a one-line error naming the file, no traceback."""
    study = next(iter(iter_studies(0, "train", 1, population="pool")))
    _write_films(tmp_path, [study])
    empty = "judge" if reader_half(pd.Series([study.patient_id]), "select")[0] else "select"
    with pytest.raises(InputError, match=rf"no films to fit the {empty} probe on.*pairs.parquet"):
        fit_readout_probe(tmp_path / "pairs.parquet", reader=empty)
