"""The rule-based CheXpert-style report labeler and the `pairaug label` command."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import run

from pairaug.cli import main
from pairaug.data import phantom
from pairaug.data.labeler import find_mentions, label_report, label_reports
from pairaug.data.schema import LABELS


def cli_env() -> dict[str, str]:
    return {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


def mentioned(report: str) -> dict[str, int]:
    return {k: v for k, v in label_report(report).items() if v is not None}


# ---------------------------------------------------------------- CheXpert-style expectations


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        # A negated list: every item is negative, not just the first.
        ("No focal consolidation, pleural effusion or pneumothorax.",
         {"Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0, "No Finding": 1}),
        ("Cannot exclude pneumonia.", {"Pneumonia": -1, "No Finding": 0}),
        # Normality stated without a negation word.
        ("Heart size is normal.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("Normal heart size.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The heart is not enlarged.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("Mild cardiomegaly.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("The cardiac silhouette is enlarged.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("Possible small left pleural effusion.", {"Pleural Effusion": -1, "No Finding": 0}),
        ("There is no pneumothorax.", {"Pneumothorax": 0, "No Finding": 1}),
        ("Pneumothorax has resolved.", {"Pneumothorax": 0, "No Finding": 1}),
        ("Moderate pulmonary edema.", {"Edema": 1, "No Finding": 0}),
        ("Right lower lobe opacity may represent atelectasis.",
         {"Lung Opacity": 1, "Atelectasis": -1, "No Finding": 0}),
        # A negation does not reach across "but".
        ("No effusion, but there is a right apical pneumothorax.",
         {"Pleural Effusion": 0, "Pneumothorax": 1, "No Finding": 0}),
        ("Endotracheal tube in standard position. Lungs are clear.", {"Support Devices": 1, "No Finding": 1}),
    ],
)
def test_chexpert_style_rules(report: str, expected: dict[str, int]) -> None:
    assert mentioned(report) == expected


# Real-report wordings (MIMIC-CXR / IU X-ray style, written for these tests).
@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Heart is large.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("The heart size is large.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("Heart is not large.", {"Cardiomegaly": 0, "No Finding": 1}),
        # A persisting finding: "no significant change in" is temporal, not a negation.
        ("No significant change in right pneumothorax or pleural fluid.",
         {"Pneumothorax": 1, "Pleural Effusion": 1, "No Finding": 0}),
        ("No interval change in the size of the left pleural effusion.", {"Pleural Effusion": 1, "No Finding": 0}),
        ("No new consolidation.", {"Consolidation": 0, "No Finding": 1}),  # "no new" still negates
        ("The cardiomediastinal silhouette and pulmonary vasculature are within normal limits.",
         {"Enlarged Cardiomediastinum": 0, "No Finding": 1}),
        ("Heart size and mediastinal contours are within normal limits.",
         {"Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0, "No Finding": 1}),
        ("The costophrenic angles are sharp.", {"Pleural Effusion": 0, "No Finding": 1}),
        ("Mediastinal contours are normal.", {"Enlarged Cardiomediastinum": 0, "No Finding": 1}),
        ("Right PICC removed.", {"Support Devices": 0, "No Finding": 1}),
        ("Interval removal of the right PICC line.", {"Support Devices": 0, "No Finding": 1}),
        ("Left lower lobe collapse.", {"Atelectasis": 1, "No Finding": 0}),
        ("No large pleural effusion.", {"Pleural Effusion": 0, "No Finding": 1}),
    ],
)
def test_real_report_wordings(report: str, expected: dict[str, int]) -> None:
    assert mentioned(report) == expected


# De-identified (IU X-ray style) wordings: "XXXX" is an unknown word where one was removed, never a
# boundary; each wording positive, negated and uncertain.
@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Cardiac size remains mildly enlarged.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("Cardiac size is not enlarged.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("Cardiac size may be mildly enlarged.", {"Cardiomegaly": -1, "No Finding": 0}),
        ("Cardiac size is normal.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The cardiac silhouette is again noted to be enlarged.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("The cardiac silhouette is no longer enlarged.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("The cardiac silhouette is possibly mildly enlarged.", {"Cardiomegaly": -1, "No Finding": 0}),
        ("Heart size XXXX large.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("Heart size XXXX not large.", {"Cardiomegaly": 0, "No Finding": 1}),
        ("Heart size XXXX XXXX large, possibly due to technique.", {"Cardiomegaly": 1, "No Finding": 0}),
        ("Heart size may be XXXX large.", {"Cardiomegaly": -1, "No Finding": 0}),
        ("Heart size XXXX within normal limits.", {"Cardiomegaly": 0, "No Finding": 1}),
        # Linking words only: an effusion that hides the heart is no big heart.
        ("The cardiac silhouette is obscured by a large left pleural effusion.",
         {"Pleural Effusion": 1, "No Finding": 0}),
        ("Small right pleural air collection.", {"Pneumothorax": 1, "No Finding": 0}),
        ("Air collection at the right apex, XXXX unchanged.", {"Pneumothorax": 1, "No Finding": 0}),
        ("No pleural air collection.", {"Pneumothorax": 0, "No Finding": 1}),
        ("Cannot exclude a small apical air collection.", {"Pneumothorax": -1, "No Finding": 0}),
        # Free air is not a pneumothorax.
        ("Air collection under the right hemidiaphragm.", {"No Finding": 1}),
        ("Subdiaphragmatic air collection.", {"No Finding": 1}),
        ("Collapse of the left lung.", {"Atelectasis": 1, "No Finding": 0}),
        ("Collapse of the right middle lobe.", {"Atelectasis": 1, "No Finding": 0}),
        ("No collapse of the lung.", {"Atelectasis": 0, "No Finding": 1}),
        ("Possible collapse of the left lower lobe.", {"Atelectasis": -1, "No Finding": 0}),
        ("Collapsed right upper lobe.", {"Atelectasis": 1, "No Finding": 0}),
    ],
)
def test_deidentified_wordings(report: str, expected: dict[str, int]) -> None:
    assert mentioned(report) == expected


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        # A plain positive in the IMPRESSION of a long report; a later sentence negates something else.
        ("FINDINGS: Heart size XXXX within normal limits. XXXX right apical pleural air collection. "
         "IMPRESSION: Large right pneumothorax. No substantial mediastinal shift.",
         {"Cardiomegaly": 0, "Pneumothorax": 1, "No Finding": 0}),
        ("IMPRESSION: 1. Large right pneumothorax 2. No substantial mediastinal shift 3. Possible small effusion",
         {"Pneumothorax": 1, "Pleural Effusion": -1, "No Finding": 0}),
        # A stop run into the next sentence still ends the first.
        ("Large right pneumothorax.No mediastinal shift.", {"Pneumothorax": 1, "No Finding": 0}),
        ("Possible left lower lobe atelectasis.Heart size XXXX large.",
         {"Atelectasis": -1, "Cardiomegaly": 1, "No Finding": 0}),
        # Negation and uncertainty before a sentence do not reach into it.
        ("No pleural effusion. Pneumothorax on the right.", {"Pleural Effusion": 0, "Pneumothorax": 1, "No Finding": 0}),
        ("Cannot exclude pneumonia.\nCardiac size remains mildly enlarged.",
         {"Pneumonia": -1, "Cardiomegaly": 1, "No Finding": 0}),
    ],
)
def test_negation_and_uncertainty_stay_in_their_sentence(report: str, expected: dict[str, int]) -> None:
    assert mentioned(report) == expected


def test_real_style_reports_label_as_a_reader_would() -> None:
    """Whole reports from tests/real_style_reports.py: the findings a radiologist would code."""
    from real_style_reports import REPORTS

    first = label_report(REPORTS[0])  # ETT, NG tube, "Heart is large.", small left effusion, no pneumothorax
    assert (first["Support Devices"], first["Cardiomegaly"], first["Pleural Effusion"], first["Pneumothorax"]) == (
        1, 1, 1, 0)
    chest_tube = label_report(REPORTS[4])
    assert chest_tube["Pneumothorax"] == 1 and chest_tube["Pleural Effusion"] == 1
    iu = label_report(REPORTS[15])
    assert iu["Enlarged Cardiomediastinum"] == 0 and iu["Pleural Effusion"] == 0 and iu["No Finding"] == 1
    # Long de-identified reports: "XXXX" inside the phrases, IMPRESSIONs as numbered lists.
    from real_style_reports import LONG_REPORTS

    heart = label_report(LONG_REPORTS[1])  # "Heart size XXXX large.", congestion with edema, effusions
    assert (heart["Cardiomegaly"], heart["Edema"], heart["Pleural Effusion"], heart["Pneumothorax"]) == (1, 1, 1, 0)
    air = label_report(LONG_REPORTS[2])  # pleural air collection, partial collapse, "No substantial mediastinal shift"
    assert (air["Pneumothorax"], air["Atelectasis"], air["Cardiomegaly"], air["Pleural Effusion"]) == (1, 1, 0, 0)
    assert label_report(LONG_REPORTS[0])["Cardiomegaly"] == 1  # "Cardiac size remains mildly enlarged."


def test_positive_beats_uncertain_beats_negative() -> None:
    # The same label stated several ways in one report: CheXpert's aggregation order.
    assert label_report("No pleural effusion. Small left pleural effusion.")["Pleural Effusion"] == 1
    assert label_report("No pleural effusion. Possible left pleural effusion.")["Pleural Effusion"] == -1
    assert label_report("No pleural effusion. No effusion.")["Pleural Effusion"] == 0


def test_empty_report_mentions_nothing() -> None:
    out = label_report("")
    assert set(out) == set(LABELS)
    assert all(out[k] is None for k in LABELS if k != "No Finding")
    assert out["No Finding"] == 1


def test_mentions_carry_severity_and_side() -> None:
    (m,) = [m for m in find_mentions("There is a large right pleural effusion.") if m.label == "Pleural Effusion"]
    assert (m.status, m.severity, m.side) == (1, "large", "right")
    (m,) = [m for m in find_mentions("Mild bibasilar atelectasis.") if m.label == "Atelectasis"]
    assert (m.severity, m.side) == ("mild", "bilateral")


def test_label_reports_frame() -> None:
    df = label_reports(["Mild cardiomegaly.", "Heart size is normal.", "Lungs are clear."])
    assert list(df.columns) == list(LABELS)
    assert str(df["Cardiomegaly"].dtype) == "Int8"
    assert df["Cardiomegaly"].tolist()[:2] == [1, 0]
    assert pd.isna(df["Cardiomegaly"].iloc[2])


# ---------------------------------------------------------------- real reports


def test_real_cxr_reports(real_cxr: Path) -> None:
    with open(real_cxr / "manifest.csv", newline="") as f:
        rows = {r["image"]: label_report(r["report"]) for r in csv.DictReader(f)}
    cardio = rows["nih_00000001_000.png"]  # NIH label: Cardiomegaly
    assert cardio["Cardiomegaly"] == 1
    assert cardio["Pleural Effusion"] == 0 and cardio["Pneumothorax"] == 0 and cardio["Consolidation"] == 0
    assert cardio["No Finding"] == 0
    normal = rows["nih_00027426_000.png"]  # NIH label: No Finding
    assert normal["Cardiomegaly"] == 0 and normal["Pleural Effusion"] == 0 and normal["Pneumothorax"] == 0
    assert normal["No Finding"] == 1
    tb = rows["tbx11k_tb0005.png"]  # active tuberculosis: opacities, hedged consolidation/infection
    assert tb["Lung Opacity"] == 1 and tb["Consolidation"] == -1 and tb["Pneumonia"] == -1
    assert tb["Cardiomegaly"] == 0 and tb["Pleural Effusion"] == 0 and tb["No Finding"] == 0
    assert rows["tbx11k_h0001.png"]["No Finding"] == 1
    assert rows["siim_pneumothorax_sample.dcm"]["No Finding"] == 1


# ---------------------------------------------------------------- phantom ground truth


def test_labeler_agrees_with_phantom_ground_truth() -> None:
    """On phantom reports the labeler recovers the drawn findings exactly (hedged ones as uncertain)."""
    studies = [s for split, n in (("train", 120), ("test", 80)) for s in phantom.iter_studies(3, split, n, 3)]
    assert sum(bool(s.findings) for s in studies) > 50
    disagreements = []
    for s in studies:
        truth, got = s.labels(), label_report(s.report)
        hedged = {f.name for f in s.findings if f.hedged}
        for name in phantom.FINDINGS:
            if truth[name] == 1:
                ok = got[name] == 1 or (name in hedged and got[name] == -1)
            else:
                ok = got[name] in (0, None)  # absent findings are negated or not mentioned
            if not ok:
                disagreements.append((s.study_id, name, truth[name], got[name], s.report))
        if got["No Finding"] != truth["No Finding"]:
            disagreements.append((s.study_id, "No Finding", truth["No Finding"], got["No Finding"], s.report))
    assert not disagreements, disagreements[:5]
    # Hedged findings exist, so the uncertain branch is exercised.
    assert any(f.hedged for s in studies for f in s.findings)


# ---------------------------------------------------------------- CLI


def test_cli_label_text_json(capsys) -> None:
    assert main(["label", "Cannot exclude pneumonia."]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"report": "Cannot exclude pneumonia.", "labels": {"Pneumonia": -1, "No Finding": 0}}

    assert main(["label", "Mild cardiomegaly.", "Heart size is normal."]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["labels"]["Cardiomegaly"] for o in out] == [1, 0]


def test_cli_label_csv_column_as_csv(tmp_path: Path, capsys) -> None:
    src = tmp_path / "reports.csv"
    src.write_text('id,text\n1,"No focal consolidation, pleural effusion or pneumothorax."\n2,Mild cardiomegaly.\n')
    assert main(["label", "--csv", str(src), "--column", "text", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["report"] for r in rows] == ["No focal consolidation, pleural effusion or pneumothorax.", "Mild cardiomegaly."]
    assert set(rows[0]) == {"report", *LABELS}
    assert (rows[0]["Consolidation"], rows[0]["Pleural Effusion"], rows[0]["Pneumothorax"]) == ("0", "0", "0")
    assert rows[0]["Cardiomegaly"] == ""  # not mentioned
    assert rows[1]["Cardiomegaly"] == "1" and rows[1]["No Finding"] == "0"


def test_cli_label_csv_missing_column(tmp_path: Path, capsys) -> None:
    src = tmp_path / "reports.csv"
    src.write_text("id,text\n1,Mild cardiomegaly.\n")
    assert main(["label", "--csv", str(src)]) == 2  # --column defaults to "report"
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'report'" in err and str(src) in err


def test_cli_entry_point(tmp_path: Path) -> None:
    """The installed `pairaug` command: --help, and labelling from stdin."""
    proc = run(["pairaug", "--help"], cwd=tmp_path)
    assert "label" in proc.stdout and "dvc repro" in proc.stdout
    proc = run(["pairaug", "label", "--help"], cwd=tmp_path)
    assert "--csv" in proc.stdout and "--column" in proc.stdout
    proc = subprocess.run(["pairaug", "label", "--format", "csv"], cwd=tmp_path, capture_output=True, text=True,
                          input="Mild cardiomegaly.\n\nNo pneumothorax.\n", env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["report"], r["Cardiomegaly"], r["Pneumothorax"]) for r in rows] == [
        ("Mild cardiomegaly.", "1", ""), ("No pneumothorax.", "", "0")]
