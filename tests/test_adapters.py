"""Each dataset adapter on small files written here in that dataset's real layout, through `prepare`."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pairaug.data.adapters import iter_chexpert, iter_mimic, mimic_report_text
from pairaug.data.images import fit_square, load_gray
from pairaug.data.prepare import (
    ChexpertConfig,
    CsvConfig,
    DataConfig,
    MimicConfig,
    NihConfig,
    OpenIConfig,
    SplitConfig,
    hash_split,
    prepare,
)
from pairaug.data.schema import LABELS, PAIR_COLUMNS, read_pairs

SIZE = 16


# ---------------------------------------------------------------- helpers


def film(h: int, w: int, seed: int) -> np.ndarray:
    """A small radiograph-like picture: dark lungs either side of a bright middle, with some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 60 + 140 * (np.abs(xx - w / 2) < w / 8) + 40 * (yy / h) + rng.normal(0, 8, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    """Write `pixels` as a real image file: mode L / RGB (gray content) / I;16 (16-bit PNG), JPEG or PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        im = Image.fromarray(pixels)
    elif mode == "RGB":
        im = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([pixels, pixels, pixels, np.full_like(pixels, 255)]))
    elif mode == "I;16":
        im = Image.fromarray(pixels.astype(np.uint16) * 200 + 1000)  # a 16-bit gray PNG
    else:
        raise ValueError(mode)
    im.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else im.save(path)
    return path


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = df.to_csv(index=False).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def check_manifest(out: Path, df: pd.DataFrame, size: int = SIZE) -> None:
    """What every prepared manifest promises: schema, unique ids, patient-level splits, real relative images."""
    assert tuple(df.columns) == PAIR_COLUMNS
    assert df["pair_id"].is_unique
    assert (df.groupby("patient_id")["split"].nunique() == 1).all(), "a patient in two splits"
    assert set(df["split"]) <= {"train", "valid", "test"}
    for rel in df["image"]:
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
        with Image.open(out / rel) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (size, size))
        assert load_gray(out / rel).std() > 5, f"{rel} is blank"
    back = read_pairs(out / "pairs.parquet", require_report=False)
    pd.testing.assert_frame_equal(back, df)


def by(df: pd.DataFrame, col: str) -> dict[str, pd.Series]:
    return {str(r[col]): r for _, r in df.iterrows()}


def label(row: pd.Series, name: str) -> int | None:
    v = row[name]
    return None if pd.isna(v) else int(v)


# ---------------------------------------------------------------- MIMIC-CXR-JPG

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  The
 cardiomediastinal silhouette is normal.  Heart size is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""
MIMIC_REPORT_2 = """                                 FINAL REPORT
 INDICATION:  Shortness of breath.

 FINDINGS:  Moderate cardiomegaly.  Small bilateral pleural effusions.

 IMPRESSION:  Cardiomegaly and small effusions, possible mild edema.
"""


@pytest.fixture
def mimic_root(tmp_path: Path) -> Path:
    root = tmp_path / "mimic-cxr-jpg"
    # (dicom_id, study, subject, split, view, image mode)
    images = [
        ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "50414267", "10000032", "train", "PA", "L"),
        ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "50414267", "10000032", "train", "LATERAL", "L"),
        ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "53189527", "10000032", "train", "AP", "RGB"),
        ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "56699142", "10000764", "validate", "AP", "L"),
        ("fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818", "57375967", "19999987", "test", "PA", "L"),
    ]
    reports = {"50414267": MIMIC_REPORT, "53189527": MIMIC_REPORT_2, "56699142": MIMIC_REPORT_2,
               "57375967": MIMIC_REPORT}
    for k, (dicom, study, subject, _, _, mode) in enumerate(images):
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        write_image(folder / f"s{study}" / f"{dicom}.jpg", film(60, 50, k), mode)
        (folder / f"s{study}.txt").write_text(reports[study])
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", pd.DataFrame(
        [(d, st, su, sp) for d, st, su, sp, _, _ in images], columns=["dicom_id", "study_id", "subject_id", "split"]))
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame(
        [(d, su, st, "CHEST (PA AND LAT)", v, 60, 50) for d, st, su, _, v, _ in images],
        columns=["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                 "Rows", "Columns"]))
    # CheXpert labels for three of the four studies (the fourth falls back to the labeler).
    chex = {c: "" for c in LABELS}
    rows = [
        {"subject_id": "10000032", "study_id": "50414267", **chex, "No Finding": "1.0"},
        {"subject_id": "10000032", "study_id": "53189527", **chex, "Cardiomegaly": "1.0", "Pleural Effusion": "1.0",
         "Edema": "-1.0", "No Finding": ""},
        {"subject_id": "10000764", "study_id": "56699142", **chex, "Cardiomegaly": "1.0", "Pneumothorax": "0.0"},
    ]
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", pd.DataFrame(rows))
    return root


def test_mimic_report_sections() -> None:
    text = mimic_report_text(MIMIC_REPORT)
    assert text == ("FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax. The "
                    "cardiomediastinal silhouette is normal. Heart size is normal. "
                    "IMPRESSION: No acute cardiopulmonary process.")
    assert mimic_report_text("Just one line of text.\n") == "Just one line of text."


def test_mimic(mimic_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="mimic", image_size=SIZE, mimic=MimicConfig(root=str(mimic_root)), workers=1)
    out = tmp_path / "prepared"
    df = prepare(cfg, 0, out)
    check_manifest(out, df)
    assert sorted(df["study_id"]) == ["50414267", "53189527", "56699142", "57375967"]  # the lateral is dropped
    assert set(df["view"]) == {"PA", "AP"}
    rows = by(df, "study_id")
    # The official split (validate → valid).
    assert [rows[s]["split"] for s in ("50414267", "53189527", "56699142", "57375967")] == [
        "train", "train", "valid", "test"]
    assert rows["50414267"]["patient_id"] == "10000032"
    assert rows["50414267"]["report"].startswith("FINDINGS: There is no focal consolidation")
    assert "INDICATION" not in rows["50414267"]["report"] and "ascites" not in rows["50414267"]["report"]
    # Dataset labels where MIMIC has them (1 / -1 / empty as given) ...
    s2 = rows["53189527"]
    assert (label(s2, "Cardiomegaly"), label(s2, "Pleural Effusion"), label(s2, "Edema")) == (1, 1, -1)
    assert label(s2, "Pneumothorax") is None and s2["label_source"] == "dataset"
    assert label(rows["50414267"], "No Finding") == 1
    # ... and the report labeler for a study without a row in the CheXpert CSV.
    s4 = rows["57375967"]
    assert s4["label_source"] == "labeler"
    assert (label(s4, "Pleural Effusion"), label(s4, "Cardiomegaly"), label(s4, "No Finding")) == (0, 0, 1)


def test_mimic_labeler_and_views(mimic_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="mimic", image_size=SIZE, workers=1, split=SplitConfig(official=False),
                     mimic=MimicConfig(root=str(mimic_root), views=["PA", "LATERAL"], use_dataset_labels=False))
    df = prepare(cfg, 0, tmp_path / "out")
    check_manifest(tmp_path / "out", df)
    assert sorted(df["view"]) == ["LATERAL", "PA", "PA"]
    assert (df["label_source"] == "labeler").all()
    assert df["Cardiomegaly"].tolist() == [0, 0, 0]  # "Heart size is normal." in both reports
    # Official split off: a hash of the patient decides, so a patient's two images stay together.
    assert df[df["patient_id"] == "10000032"]["split"].nunique() == 1


def test_mimic_reports_root(mimic_root: Path, tmp_path: Path) -> None:
    """Reports may live in a separate MIMIC-CXR folder (the JPG release ships no reports)."""
    reports = tmp_path / "mimic-cxr-reports"
    for txt in (mimic_root / "files").rglob("s*.txt"):
        dest = reports / txt.relative_to(mimic_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        txt.rename(dest)
    recs = list(iter_mimic(mimic_root, reports_root=reports))
    assert len(recs) == 4 and all(r.report and r.report.startswith("FINDINGS:") for r in recs)
    assert all(r.image.exists() for r in recs)


# ---------------------------------------------------------------- CheXpert


CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABELS]


@pytest.fixture
def chexpert_root(tmp_path: Path) -> Path:
    root = tmp_path / "CheXpert-v1.0-small"

    def row(rel: str, fl: str, appa: str, **labels: str) -> list[str]:
        values = {name.replace("_", " "): v for name, v in labels.items()}
        return [f"CheXpert-v1.0-small/{rel}", "Female", "68", fl, appa, *[values.get(c, "") for c in LABELS]]

    train = [
        row("train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", Support_Devices="1.0", No_Finding="1.0"),
        row("train/patient00002/study2/view1_frontal.jpg", "Frontal", "AP", Cardiomegaly="-1.0", Edema="1.0",
            Pleural_Effusion="0.0"),
        row("train/patient00002/study2/view2_lateral.jpg", "Lateral", "", Cardiomegaly="-1.0", Edema="1.0"),
        row("train/patient00002/study1/view1_frontal.jpg", "Frontal", "PA", Lung_Opacity="1.0", Fracture="1.0"),
        row("train/patient00003/study1/view1_frontal.jpg", "Frontal", "PA", Atelectasis="-1.0", Consolidation="0.0"),
    ]
    valid = [row("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP", Cardiomegaly="1.0",
                 Edema="0.0", Atelectasis="0.0", Consolidation="0.0", Pleural_Effusion="0.0")]
    for k, r in enumerate(train + valid):
        write_image(root.parent / r[0], film(64, 52, 10 + k))  # CheXpert's JPEGs are 8-bit gray
    write_csv(root / "train.csv", pd.DataFrame(train, columns=CHEXPERT_HEADER))
    write_csv(root / "valid.csv", pd.DataFrame(valid, columns=CHEXPERT_HEADER))
    return root


def test_chexpert(chexpert_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="chexpert", image_size=SIZE, chexpert=ChexpertConfig(root=str(chexpert_root)), workers=1)
    out = tmp_path / "prepared"
    df = prepare(cfg, 0, out)
    check_manifest(out, df)
    assert len(df) == 5 and "LATERAL" not in set(df["view"])  # frontal only
    assert set(df["view"]) == {"AP", "PA"}
    assert (df["report"] == "").all() and (df["label_source"] == "dataset").all()  # label-only source
    assert sorted(df["patient_id"].unique()) == ["patient00001", "patient00002", "patient00003", "patient64541"]
    rows = by(df, "study_id")
    assert set(rows) == {"patient00001/study1", "patient00002/study2", "patient00002/study1", "patient00003/study1",
                         "patient64541/study1"}
    p2 = rows["patient00002/study2"]
    assert (label(p2, "Cardiomegaly"), label(p2, "Edema"), label(p2, "Pleural Effusion")) == (-1, 1, 0)
    assert label(p2, "Pneumothorax") is None  # blank = not mentioned
    assert label(rows["patient00001/study1"], "Support Devices") == 1
    assert rows["patient64541/study1"]["split"] == "valid"  # valid.csv is CheXpert's official valid split


def test_chexpert_laterals_kept_when_asked(chexpert_root: Path) -> None:
    recs = list(iter_chexpert(chexpert_root, csv_files=["train.csv"], frontal_only=False))
    assert len(recs) == 5
    lateral = [r for r in recs if r.image.name == "view2_lateral.jpg"]
    assert len(lateral) == 1 and lateral[0].image.exists() and lateral[0].study_id == "patient00002/study2"


# ---------------------------------------------------------------- OpenI / IU X-ray (Kaggle layout)


@pytest.fixture
def openi_root(tmp_path: Path) -> Path:
    root = tmp_path / "iu-xray"
    reports = pd.DataFrame([
        ("1", "normal", "normal", "Xray Chest PA and Lateral", "Positive TB test", "None.",
         "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
         "There is no focal consolidation. There are no XXXX of a pleural effusion. There is no evidence of "
         "pneumothorax.", "Normal chest x-XXXX."),
        ("2", "Cardiomegaly/borderline", "Cardiomegaly", "Chest, 2 views, frontal and lateral", "Preop bariatric "
         "surgery.", "", "Borderline cardiomegaly. Midline sternotomy XXXX. Enlarged pulmonary arteries. Clear "
         "lungs. Inferior XXXX XXXX XXXX.", "No acute pulmonary findings."),
        ("3", "Pleural Effusion/left", "Pleural Effusion", "PA and lateral chest", "dyspnea", "",
         "", "Moderate left pleural effusion. No pneumothorax."),  # no findings section, impression only
    ], columns=["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
    write_csv(root / "indiana_reports.csv", reports)
    projections = pd.DataFrame([
        ("1", "1_IM-0001-4001.dcm.png", "Frontal"),
        ("1", "1_IM-0001-3001.dcm.png", "Lateral"),
        ("2", "2_IM-0652-1001.dcm.png", "Frontal"),
        ("2", "2_IM-0652-2001.dcm.png", "Lateral"),
        ("3", "3_IM-1384-1001.dcm.png", "Frontal"),
        ("3", "3_IM-1384-1002.dcm.png", "Frontal"),  # two frontal films in one study
    ], columns=["uid", "filename", "projection"])
    write_csv(root / "indiana_projections.csv", projections)
    for k, name in enumerate(projections["filename"]):
        write_image(root / "images" / "images_normalized" / name, film(48, 40, 30 + k), "RGBA" if k == 2 else "L")
    return root


def test_openi(openi_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="openi", image_size=SIZE, openi=OpenIConfig(root=str(openi_root)), workers=1)
    out = tmp_path / "prepared"
    df = prepare(cfg, 0, out)
    check_manifest(out, df)
    assert len(df) == 4 and set(df["view"]) == {"Frontal"}
    assert (df["label_source"] == "labeler").all()
    assert df[df["patient_id"] == "3"]["study_id"].tolist() == ["3", "3"]
    rows = {pid: part.iloc[0] for pid, part in df.groupby("patient_id")}
    assert rows["1"]["report"].startswith("FINDINGS: The cardiac silhouette") and "IMPRESSION: Normal chest" in rows["1"]["report"]
    assert rows["3"]["report"] == "IMPRESSION: Moderate left pleural effusion. No pneumothorax."
    assert (label(rows["1"], "Edema"), label(rows["1"], "Consolidation"), label(rows["1"], "Pneumothorax")) == (0, 0, 0)
    assert label(rows["1"], "No Finding") == 1
    assert (label(rows["3"], "Pleural Effusion"), label(rows["3"], "Pneumothorax")) == (1, 0)
    assert label(rows["2"], "Cardiomegaly") == -1  # "Borderline cardiomegaly."


def test_openi_lateral_view(openi_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="openi", image_size=SIZE, openi=OpenIConfig(root=str(openi_root), views=["Lateral"]),
                     workers=1)
    df = prepare(cfg, 0, tmp_path / "out")
    assert sorted(df["patient_id"]) == ["1", "2"] and set(df["view"]) == {"Lateral"}


# ---------------------------------------------------------------- NIH ChestX-ray14 (label-only)


@pytest.fixture
def nih_root(tmp_path: Path) -> Path:
    root = tmp_path / "nih"
    # The real file's header has unquoted brackets with commas and a trailing comma: 12 header fields, 11 per row.
    lines = [
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],",
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",
        "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
        "00000003_000.png,Effusion|Infiltration|Mass,0,3,74,F,AP,2500,2048,0.168,0.168",
        "00000004_000.png,Hernia,0,4,82,F,PA,2582,2905,0.143,0.143",
    ]
    (root / "images").mkdir(parents=True)
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    modes = ["L", "L", "RGBA", "L", "L"]  # a few NIH PNGs really are RGBA
    for k, line in enumerate(lines[1:]):
        write_image(root / "images" / line.split(",")[0], film(40, 40, 50 + k), modes[k])
    return root


def test_nih(nih_root: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="nih", image_size=SIZE, nih=NihConfig(root=str(nih_root)), workers=1)
    out = tmp_path / "prepared"
    df = prepare(cfg, 0, out)
    check_manifest(out, df)
    assert len(df) == 5 and (df["label_source"] == "dataset").all()
    rows = by(df, "study_id")
    assert rows["00000001_000.png"]["patient_id"] == "1" and rows["00000003_000.png"]["view"] == "AP"
    assert rows["00000001_000.png"]["split"] == rows["00000001_001.png"]["split"]  # same patient, same split
    r3 = rows["00000003_000.png"]
    assert (label(r3, "Pleural Effusion"), label(r3, "Lung Opacity"), label(r3, "Lung Lesion")) == (1, 1, 1)
    assert (label(r3, "Cardiomegaly"), label(r3, "Pneumothorax"), label(r3, "No Finding")) == (0, 0, 0)
    # NIH does not cover these CheXpert labels: not mentioned rather than negative.
    assert label(r3, "Fracture") is None and label(r3, "Support Devices") is None
    assert (label(rows["00000002_000.png"], "No Finding"), label(rows["00000002_000.png"], "Cardiomegaly")) == (1, 0)
    # A finding outside CheXpert's labels still means "not normal".
    hernia = rows["00000004_000.png"]
    assert label(hernia, "No Finding") == 0 and label(hernia, "Cardiomegaly") == 0
    assert label(rows["00000001_001.png"], "Cardiomegaly") == 1


# ---------------------------------------------------------------- generic CSV


@pytest.fixture
def csv_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "mydata"
    specs = [  # (relative path, mode, patient, view, report)
        ("a/p1_frontal.png", "L", "p1", "PA", "Mild cardiomegaly. No pleural effusion."),
        ("a/p1_followup.png", "I;16", "p1", "PA", "Moderate cardiomegaly with small left pleural effusion."),
        ("b/p2.png", "RGB", "p2", "AP", "Heart size is normal. Lungs are clear."),
        ("b/p3.jpg", "L", "p3", "PA", "Cannot exclude pneumonia."),
        ("c/p4.jpg", "RGB", "p4", "PA", "No focal consolidation, pleural effusion or pneumothorax."),
    ]
    for k, (rel, mode, *_ ) in enumerate(specs):
        write_image(root / "imgs" / rel, film(50 + 4 * k, 40, 70 + k), mode)
    write_csv(root / "pairs.csv", pd.DataFrame(
        [(f"imgs/{rel}", pid, view, rep, "1" if k < 2 else "0") for k, (rel, _, pid, view, rep) in enumerate(specs)],
        columns=["image", "patient_id", "view", "report", "Cardiomegaly"]))
    return root


def test_csv(csv_dataset: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="csv", image_size=SIZE, csv=CsvConfig(path=str(csv_dataset / "pairs.csv")), workers=1)
    out = tmp_path / "prepared"
    df = prepare(cfg, 0, out)
    check_manifest(out, df)
    assert len(df) == 5 and (df["label_source"] == "labeler").all()
    assert df["patient_id"].tolist() == ["p1", "p1", "p2", "p3", "p4"]
    assert df["view"].tolist() == ["PA", "PA", "AP", "PA", "PA"]
    assert df["study_id"].tolist()[0] == "imgs/a/p1_frontal.png"  # no study column: one study per image
    assert df["Cardiomegaly"].tolist()[:3] == [1, 1, 0]
    assert df["Pleural Effusion"].tolist()[:2] == [0, 1]
    assert label(df.iloc[3], "Pneumonia") == -1
    # The 16-bit PNG keeps its content: min-max windowed to 8 bits (not clipped to white), padded, resized.
    with Image.open(csv_dataset / "imgs/a/p1_followup.png") as im:
        assert im.mode == "I;16"
        src = np.asarray(im).astype(float)
    windowed = np.round((src - src.min()) / (src.max() - src.min()) * 255).astype(np.uint8)
    got = load_gray(out / df["image"].iloc[1]).astype(int)
    assert np.abs(got - fit_square(windowed, SIZE).astype(int)).max() <= 1
    assert got[:, 4:12].mean() > 40 and got[:, 4:12].std() > 20

def test_csv_dataset_labels_and_options(csv_dataset: Path, tmp_path: Path) -> None:
    """Label columns from the CSV win over the labeler; no patient column: each image is its own patient."""
    src = pd.read_csv(csv_dataset / "pairs.csv", dtype=str).rename(columns={"image": "file", "report": "text"})
    src["file"] = src["file"].str.removeprefix("imgs/")
    src["Cardiomegaly"] = ["1", "", "-1", "0", "0"]
    write_csv(tmp_path / "elsewhere" / "list.csv", src.drop(columns=["patient_id"]))
    cfg = DataConfig(source="csv", image_size=SIZE, workers=1, csv=CsvConfig(
        path=str(tmp_path / "elsewhere" / "list.csv"), image_column="file", report_column="text",
        label_columns=["Cardiomegaly"], image_root=str(csv_dataset / "imgs")))
    df = prepare(cfg, 0, tmp_path / "out")
    check_manifest(tmp_path / "out", df)
    assert (df["label_source"] == "dataset").all()
    assert [label(r, "Cardiomegaly") for _, r in df.iterrows()] == [1, None, -1, 0, 0]
    assert label(df.iloc[0], "Pleural Effusion") is None  # a dataset-labelled row is not also run through the labeler
    assert df["patient_id"].tolist() == src["file"].tolist()


def test_hash_split_by_patient(tmp_path: Path) -> None:
    """Without an official split, patients (not images) are split by a hash, near the configured fractions."""
    fractions = SplitConfig(train=0.7, valid=0.1, test=0.2)
    splits = pd.Series([hash_split(f"pt{i}", 0, fractions) for i in range(3000)]).value_counts(normalize=True)
    assert abs(splits["train"] - 0.7) < 0.03 and abs(splits["valid"] - 0.1) < 0.03 and abs(splits["test"] - 0.2) < 0.03
    assert [hash_split(f"pt{i}", 1, fractions) for i in range(50)] != [hash_split(f"pt{i}", 0, fractions) for i in range(50)]

    root = tmp_path / "many"
    for i in range(80):  # one film per study (the same film in two splits is refused)
        write_image(root / f"x{i}.png", film(20, 20, i))
    rows = [(f"x{i}.png", f"pt{i // 3}", f"st{i}", "Lungs are clear.") for i in range(60)]
    write_csv(root / "pairs.csv", pd.DataFrame(rows, columns=["image", "patient_id", "study", "report"]))
    cfg = DataConfig(source="csv", image_size=8, workers=1, csv=CsvConfig(path=str(root / "pairs.csv"), study_column="study"))
    df = prepare(cfg, 0, tmp_path / "out")
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert df["split"].nunique() == 3
    # Adding patients does not move existing ones.
    more = rows + [(f"x{60 + i}.png", f"new{i}", f"n{i}", "Lungs are clear.") for i in range(20)]
    write_csv(root / "pairs.csv", pd.DataFrame(more, columns=["image", "patient_id", "study", "report"]))
    df2 = prepare(cfg, 0, tmp_path / "out2")
    old = df2[~df2["patient_id"].str.startswith("new")].reset_index(drop=True)
    assert old[["pair_id", "split"]].equals(df[["pair_id", "split"]])
