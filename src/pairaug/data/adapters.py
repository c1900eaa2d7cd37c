"""Dataset adapters: each real layout → a stream of `SourceRecord`s in one schema.

Paired sources (image + report): phantom, mimic (MIMIC-CXR-JPG), openi (IU X-ray), csv (generic).
Label-only sources (image + labels, no report; for evaluation): chexpert, nih (ChestX-ray14).
Adapters only read tables and resolve paths; images are decoded later, one at a time, by `prepare`.
Every path a table names goes through `under_root`, which refuses one that leaves its declared root.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pairaug.data.schema import LABELS
from pairaug.data.tables import cell, read_csv
from pairaug.errors import InputError, ParamError

PAIRED_SOURCES = ("phantom", "mimic", "openi", "csv")
LABEL_ONLY_SOURCES = ("chexpert", "nih")


@dataclass
class SourceRecord:
    """One image (with its report and labels where the dataset has them) before preparation."""

    patient_id: str
    study_id: str
    image: Path  # absolute path of the source image
    image_rel: str  # the image's path relative to its dataset's image root (normalised, "/"-separated)
    report: str | None
    view: str = ""
    labels: dict[str, int | None] | None = None  # dataset labels; None → run the labeler on the report
    split: str | None = None  # the dataset's official split, where it has one
    origin: tuple[Path, int | None, str | None] = field(default=(Path("."), None, None))  # (file, row, field) for errors


def _label_value(raw: str, file: Path, row: int, col: str) -> int | None:
    raw = raw.strip()
    if raw == "":
        return None
    try:
        v = int(float(raw))
    except ValueError:
        raise InputError(f"label must be 1, 0, -1 or empty, got {raw!r}", file=file, row=row, field=col) from None
    if v not in (1, 0, -1):
        raise InputError(f"label must be 1, 0, -1 or empty, got {raw!r}", file=file, row=row, field=col)
    return v


def under_root(root: Path, rel: str, *, file: Path, row: int | None, field: str, what: str = "image") -> tuple[Path, str]:
    """(root / rel, rel normalised): the one place a path read from a dataset's tables is resolved.

    Refuses an absolute path or one whose `..` parts leave `root` (`../../x.png`, `/etc/passwd`): a
    table may only name files inside the root it was declared with. The check is on the path as
    written; symbolic links inside the root are followed (the dataset's owner made them, a cell cannot).
    """
    if os.path.isabs(rel):
        raise InputError(f"{what} path {rel!r} is absolute; it must be relative to the {what} root {root}",
                         file=file, row=row, field=field)
    norm = os.path.normpath(rel)
    if norm == os.curdir or norm == os.pardir or norm.startswith(os.pardir + os.sep):
        raise InputError(f"{what} path {rel!r} leaves the {what} root {root}", file=file, row=row, field=field)
    return root / norm, Path(norm).as_posix()


def _require_text(value: str, file: Path, row: int, col: str, what: str = "report") -> str:
    if not value.strip():
        raise InputError(f"empty {what}", file=file, row=row, field=col)
    return value.strip()


# ---------------------------------------------------------------- generic CSV


def iter_csv(path: str | Path, *, image_column: str = "image", report_column: str = "report",
             patient_column: str | None = "patient_id", study_column: str | None = None,
             view_column: str | None = "view", label_columns: list[str] | None = None,
             image_root: str | Path | None = None) -> Iterator[SourceRecord]:
    """A CSV of image path + report (+ optional patient id, view and CheXpert label columns).

    Image paths are relative to `image_root` (default: the CSV's folder). Without a patient column each
    image is its own patient. Label columns, when given, must be CheXpert label names.
    """
    path = Path(path)
    df = read_csv(path, required=[image_column, report_column])
    root = Path(image_root) if image_root else path.parent
    labels = label_columns or []
    for col in labels:
        if col not in LABELS:
            raise ParamError("data.csv.label_columns", f"{col!r} is not a CheXpert label ({', '.join(LABELS)})")
        if col not in df.columns:
            raise InputError(f"missing label column '{col}'", file=path, field=col)
    for i in range(len(df)):
        rel = cell(df, i, image_column)
        if not rel:
            raise InputError("empty image path", file=path, row=i, field=image_column)
        report = _require_text(cell(df, i, report_column), path, i, report_column)
        patient = cell(df, i, patient_column) if patient_column and patient_column in df.columns else ""
        study = cell(df, i, study_column) if study_column and study_column in df.columns else ""
        view = cell(df, i, view_column) if view_column and view_column in df.columns else ""
        recorded = {c: _label_value(cell(df, i, c), path, i, c) for c in labels} if labels else None
        image, image_rel = under_root(root, rel, file=path, row=i, field=image_column)
        yield SourceRecord(
            patient_id=patient or rel, study_id=study or rel, image=image, image_rel=image_rel, report=report, view=view,
            labels={**dict.fromkeys(LABELS), **recorded} if recorded else None,
            origin=(path, i, image_column),
        )


# ---------------------------------------------------------------- MIMIC-CXR-JPG

_SECTION = re.compile(r"^\s*([A-Z][A-Z /]+):", re.M)
_TITLE = re.compile(r"^\s*FINAL REPORT\b")


def mimic_report_text(text: str) -> str:
    """FINDINGS + IMPRESSION of a MIMIC-CXR free-text report (as PairAug prepared them), whitespace-normalised."""
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        sections[m.group(1).strip()] = " ".join(text[m.end() : end].split())
    parts = []
    if sections.get("FINDINGS"):
        parts.append("FINDINGS: " + sections["FINDINGS"])
    if sections.get("IMPRESSION"):
        parts.append("IMPRESSION: " + sections["IMPRESSION"])
    if parts:
        return " ".join(parts)
    # No FINDINGS/IMPRESSION: the whole text, less the "FINAL REPORT" title every MIMIC report starts with
    # (otherwise a report holding only that title read as non-empty and slipped past the empty-report check).
    return " ".join(_TITLE.sub("", text, count=1).split())


def _read_report(path: Path) -> str:
    """A report text file as UTF-8; a bad byte is an InputError naming the file (was an uncaught traceback)."""
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"report is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8",
                         file=path, field="report") from None


def _first_existing(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    return root / names[0]


def iter_mimic(root: str | Path, *, views: list[str] | None = None, use_dataset_labels: bool = True,
               reports_root: str | Path | None = None) -> Iterator[SourceRecord]:
    """MIMIC-CXR-JPG: split, metadata and CheXpert CSVs + `files/pXX/pNNN/sMMM/<dicom_id>.jpg` + report .txt files."""
    root = Path(root)
    reports_root = Path(reports_root) if reports_root else root
    split_csv = _first_existing(root, ("mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-split.csv"))
    meta_csv = _first_existing(root, ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv"))
    chex_csv = _first_existing(root, ("mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-chexpert.csv"))
    splits = read_csv(split_csv, required=["dicom_id", "study_id", "subject_id", "split"])
    meta = read_csv(meta_csv, required=["dicom_id", "ViewPosition"])
    view_of = dict(zip(meta["dicom_id"], meta["ViewPosition"]))
    labels_of: dict[str, dict[str, int | None]] = {}
    if use_dataset_labels:
        chex = read_csv(chex_csv, required=["subject_id", "study_id", *LABELS])
        for i in range(len(chex)):
            labels_of[cell(chex, i, "study_id")] = {c: _label_value(cell(chex, i, c), chex_csv, i, c) for c in LABELS}
    wanted = {v.upper() for v in (views or ["PA", "AP"])}
    for i in range(len(splits)):
        dicom, study, subject = (cell(splits, i, c) for c in ("dicom_id", "study_id", "subject_id"))
        view = view_of.get(dicom, "")
        if view.upper() not in wanted:
            continue
        folder = f"files/p{subject[:2]}/p{subject}"
        report_file, _ = under_root(reports_root, f"{folder}/s{study}.txt", file=split_csv, row=i, field="study_id",
                                    what="report")
        image, image_rel = under_root(root, f"{folder}/s{study}/{dicom}.jpg", file=split_csv, row=i, field="dicom_id")
        if not report_file.exists():
            raise InputError(f"report file not found: {report_file}", file=split_csv, row=i, field="study_id")
        report = _require_text(mimic_report_text(_read_report(report_file)), report_file, None, "report")
        split = {"validate": "valid"}.get(cell(splits, i, "split"), cell(splits, i, "split"))
        yield SourceRecord(
            patient_id=subject, study_id=study, image=image, image_rel=image_rel, report=report,
            view=view, labels=labels_of.get(study) if use_dataset_labels else None, split=split,
            origin=(split_csv, i, "dicom_id"),
        )


# ---------------------------------------------------------------- OpenI / IU X-ray


def iter_openi(root: str | Path, *, reports_csv: str = "indiana_reports.csv",
               projections_csv: str = "indiana_projections.csv", images_dir: str = "images/images_normalized",
               views: list[str] | None = None) -> Iterator[SourceRecord]:
    """IU X-ray (Kaggle layout): reports CSV (uid, findings, impression) + projections CSV (uid, filename, projection)."""
    root = Path(root)
    rep_path, proj_path = root / reports_csv, root / projections_csv
    reports = read_csv(rep_path, required=["uid", "findings", "impression"])
    projections = read_csv(proj_path, required=["uid", "filename", "projection"])
    text_of: dict[str, str] = {}
    for i in range(len(reports)):
        findings, impression = cell(reports, i, "findings"), cell(reports, i, "impression")
        parts = ([f"FINDINGS: {findings}"] if findings else []) + ([f"IMPRESSION: {impression}"] if impression else [])
        text_of[cell(reports, i, "uid")] = " ".join(parts)
    wanted = {v.lower() for v in (views or ["Frontal"])}
    for i in range(len(projections)):
        if cell(projections, i, "projection").lower() not in wanted:
            continue
        uid = cell(projections, i, "uid")
        if uid not in text_of:
            raise InputError(f"uid {uid!r} has no row in {reports_csv}", file=proj_path, row=i, field="uid")
        report = text_of[uid]
        if not report:
            raise InputError("empty report (no findings or impression)", file=rep_path,
                             row=int(reports.index[reports["uid"] == uid][0]), field="findings")
        image, image_rel = under_root(root / images_dir, cell(projections, i, "filename"), file=proj_path, row=i,
                                      field="filename")
        yield SourceRecord(patient_id=uid, study_id=uid, image=image, image_rel=image_rel, report=report,
                           view=cell(projections, i, "projection"), origin=(proj_path, i, "filename"))


# ---------------------------------------------------------------- CheXpert (label-only)


def iter_chexpert(root: str | Path, *, csv_files: list[str] | None = None, frontal_only: bool = True) -> Iterator[SourceRecord]:
    """CheXpert train/valid CSVs: Path, Frontal/Lateral, AP/PA and the 14 labels (uncertain = -1)."""
    root = Path(root)
    for name in csv_files or ["train.csv", "valid.csv"]:
        path = root / name
        df = read_csv(path, required=["Path", *LABELS])
        for i in range(len(df)):
            rel = cell(df, i, "Path")
            if frontal_only and "Frontal/Lateral" in df.columns and cell(df, i, "Frontal/Lateral") != "Frontal":
                continue
            parts = Path(rel).parts
            # Paths start with the dataset folder name ("CheXpert-v1.0-small/train/patient00001/study1/...").
            inside = "/".join(parts[1:]) if len(parts) > 1 and parts[0] == root.name else rel
            image, image_rel = under_root(root, inside, file=path, row=i, field="Path")
            patient = next((p for p in parts if p.startswith("patient")), rel)
            study = "/".join(parts[-3:-1]) if len(parts) >= 3 else rel
            labels = {c: _label_value(cell(df, i, c), path, i, c) for c in LABELS}
            split = "valid" if "valid" in name else None
            yield SourceRecord(patient_id=patient, study_id=study, image=image, image_rel=image_rel, report=None,
                               view=cell(df, i, "AP/PA") if "AP/PA" in df.columns else "", labels=labels,
                               split=split, origin=(path, i, "Path"))


# ---------------------------------------------------------------- NIH ChestX-ray14 (label-only)

NIH_TO_CHEXPERT = {
    "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation", "Edema": "Edema",
    "Effusion": "Pleural Effusion", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax", "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion", "Infiltration": "Lung Opacity", "Pleural_Thickening": "Pleural Other",
    "No Finding": "No Finding",
}
NIH_OTHER = {"Emphysema", "Fibrosis", "Hernia"}


def iter_nih(root: str | Path, *, entries_csv: str = "Data_Entry_2017.csv", images_dir: str = "images") -> Iterator[SourceRecord]:
    """NIH ChestX-ray14: `Data_Entry_2017.csv` ("Finding Labels" joined by |) + a folder of PNGs.

    The NIH labels are complete for its 14 findings, so a label it does not list is negative (0);
    CheXpert labels it does not cover stay unmentioned.
    """
    root = Path(root)
    path = root / entries_csv
    df = read_csv(path, required=["Image Index", "Finding Labels", "Patient ID"])
    covered = set(NIH_TO_CHEXPERT.values())
    for i in range(len(df)):
        found = [x.strip() for x in cell(df, i, "Finding Labels").split("|") if x.strip()]
        unknown = [x for x in found if x not in NIH_TO_CHEXPERT and x not in NIH_OTHER]
        if unknown:
            raise InputError(f"unknown NIH finding {unknown[0]!r}", file=path, row=i, field="Finding Labels")
        labels: dict[str, int | None] = {c: (0 if c in covered else None) for c in LABELS}
        for x in found:
            if x in NIH_TO_CHEXPERT:
                labels[NIH_TO_CHEXPERT[x]] = 1
        labels["No Finding"] = int(found == ["No Finding"])
        name = cell(df, i, "Image Index")
        image, image_rel = under_root(root / images_dir, name, file=path, row=i, field="Image Index")
        yield SourceRecord(patient_id=cell(df, i, "Patient ID"), study_id=name, image=image, image_rel=image_rel,
                           report=None, view=cell(df, i, "View Position") if "View Position" in df.columns else "",
                           labels=labels, origin=(path, i, "Image Index"))
