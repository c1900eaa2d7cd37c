"""Bad input: one clear error naming the file, row and field; the stage exits 2; nothing written is lost."""

from __future__ import annotations

import hashlib
import runpy
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run
from PIL import Image

from pairaug.data.prepare import (
    ChexpertConfig,
    CsvConfig,
    DataConfig,
    MimicConfig,
    NihConfig,
    OpenIConfig,
    hash_split,
    prepare,
)
from pairaug.data.schema import LABELS
from pairaug.errors import InputError, PairaugError, ParamError
from pairaug.params import SECTIONS, from_dict, load_params, section

GOOD_ROWS = [
    ("imgs/a.png", "p1", "Mild cardiomegaly."),
    ("imgs/b.png", "p2", "No focal consolidation, pleural effusion or pneumothorax."),
    ("imgs/c.jpg", "p3", "Heart size is normal."),
    ("imgs/d.png", "p4", "Cannot exclude pneumonia."),
]


def gray(seed: int, h: int = 24, w: int = 20) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(30, 220, (h, w), dtype=np.uint8))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A good generic-CSV dataset; each test breaks one thing in it."""
    root = tmp_path / "dataset"
    (root / "imgs").mkdir(parents=True)
    for k, (rel, _, _) in enumerate(GOOD_ROWS):
        gray(k).save(root / rel)
    write_rows(root, GOOD_ROWS)
    return root


def write_rows(root: Path, rows: list[tuple], columns: tuple[str, ...] = ("image", "patient_id", "report")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(root / "pairs.csv", index=False)
    return root / "pairs.csv"


def prepare_csv(root: Path, out: Path, workers: int = 1, **csv_kw) -> pd.DataFrame:
    cfg = DataConfig(source="csv", image_size=16, workers=workers, csv=CsvConfig(path=str(root / "pairs.csv"), **csv_kw))
    return prepare(cfg, 0, out)


def expect_error(fn: Callable[[], object], out: Path, *, file: Path | None, row: int | None, field: str | None,
                 says: str, kind: type[PairaugError] = InputError) -> str:
    """`fn` raises one one-line error of `kind` naming file, row and field; `out` was not created."""
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert says in msg, msg
    if file is not None:
        assert f"file {file}" in msg, msg
    if row is not None:
        assert f"row {row}," in msg or f"row {row})" in msg, msg
    if field is not None:
        assert f"field '{field}'" in msg, msg
    assert not out.exists(), "a failed prepare left an output behind"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp folder left behind"
    return msg


# ---------------------------------------------------------------- generic CSV, library level


def test_missing_image(dataset: Path, tmp_path: Path) -> None:
    (dataset / "imgs" / "b.png").unlink()
    msg = expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                       row=1, field="image", says="image file not found")
    assert str(dataset / "imgs" / "b.png") in msg


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("b.png", b"this is not a PNG"),
        ("c.jpg", None),  # a truncated JPEG
        ("d.png", b""),  # an empty file
    ],
)
def test_corrupt_image(dataset: Path, tmp_path: Path, name: str, content: bytes | None) -> None:
    path = dataset / "imgs" / name
    path.write_bytes(content if content is not None else path.read_bytes()[:150])
    row = [r[0] for r in GOOD_ROWS].index(f"imgs/{name}")
    msg = expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                       row=row, field="image", says="cannot decode image")
    assert str(path) in msg


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns while reading the garbage
def test_corrupt_dicom(dataset: Path, tmp_path: Path) -> None:
    (dataset / "imgs" / "e.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    write_rows(dataset, [*GOOD_ROWS, ("imgs/e.dcm", "p5", "Lungs are clear.")])
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=4, field="image", says="cannot decode DICOM")


@pytest.mark.parametrize("report", ["", "   "])
def test_empty_report(dataset: Path, tmp_path: Path, report: str) -> None:
    rows = list(GOOD_ROWS)
    rows[2] = (rows[2][0], rows[2][1], report)
    write_rows(dataset, rows)
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=2, field="report", says="empty report")


def test_empty_image_path(dataset: Path, tmp_path: Path) -> None:
    write_rows(dataset, [*GOOD_ROWS, ("", "p9", "Lungs are clear.")])
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=4, field="image", says="empty image path")


def test_missing_required_column(dataset: Path, tmp_path: Path) -> None:
    write_rows(dataset, [r[:2] for r in GOOD_ROWS], columns=("image", "patient_id"))
    # A missing column is a header problem: there is no row to name, the file and the field are named.
    msg = expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                       row=None, field="report", says="missing required column 'report'")
    assert "has: image, patient_id" in msg


def test_missing_label_column(dataset: Path, tmp_path: Path) -> None:
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out", label_columns=["Edema"]), tmp_path / "out",
                 file=dataset / "pairs.csv", row=None, field="Edema", says="missing label column")


def test_bad_label_value(dataset: Path, tmp_path: Path) -> None:
    df = pd.DataFrame(GOOD_ROWS, columns=["image", "patient_id", "report"]).assign(Edema=["1", "0", "yes", ""])
    df.to_csv(dataset / "pairs.csv", index=False)
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out", label_columns=["Edema"]), tmp_path / "out",
                 file=dataset / "pairs.csv", row=2, field="Edema", says="label must be 1, 0, -1 or empty, got 'yes'")


def test_label_column_must_be_a_chexpert_label(dataset: Path, tmp_path: Path) -> None:
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out", label_columns=["Effusion"]), tmp_path / "out",
                 file=None, row=None, field=None, says="data.csv.label_columns", kind=ParamError)


def test_duplicate_ids(dataset: Path, tmp_path: Path) -> None:
    write_rows(dataset, [*GOOD_ROWS, GOOD_ROWS[1]])
    msg = expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                       row=4, field="image", says="duplicate pair")
    assert "as row 1" in msg  # and where the first copy is


def test_unreadable_encoding(dataset: Path, tmp_path: Path) -> None:
    text = (dataset / "pairs.csv").read_bytes().replace(b"Heart size", b"C\xe9ur size")  # a latin-1 byte in row 2
    (dataset / "pairs.csv").write_bytes(text)
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=2, field="report", says="not valid UTF-8 (byte 0xe9)")


def test_unreadable_encoding_after_multiline_report(dataset: Path, tmp_path: Path) -> None:
    """Reports hold line breaks: the row named is the CSV record, not the line number."""
    rows = list(GOOD_ROWS)
    rows[0] = (rows[0][0], rows[0][1], "FINDINGS:\nMild cardiomegaly.\n\nIMPRESSION:\nCardiomegaly.")
    rows[3] = (rows[3][0], rows[3][1], "Cannot exclude pneumonia. Caf\u00e9.")
    write_rows(dataset, rows)
    (dataset / "pairs.csv").write_bytes((dataset / "pairs.csv").read_bytes().replace("\u00e9".encode(), b"\xe9"))
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=3, field="report", says="not valid UTF-8")


def test_unquoted_comma_is_not_silently_shifted(dataset: Path, tmp_path: Path) -> None:
    """A first row with more fields than the header must not be read with its columns shifted."""
    (dataset / "pairs.csv").write_text("image,patient_id,report\nimgs/a.png,p1,No effusion, no pneumothorax.\n")
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", file=dataset / "pairs.csv",
                 row=0, field=None, says="row has 4 fields but the header has 3")


def test_csv_not_found(tmp_path: Path) -> None:
    expect_error(lambda: prepare_csv(tmp_path / "nowhere", tmp_path / "out"), tmp_path / "out",
                 file=tmp_path / "nowhere" / "pairs.csv", row=None, field=None, says="CSV file not found")


def test_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ParamError) as e:
        from_dict(DataConfig, {"source": "dicomweb"}, "data")
    assert str(e.value).startswith("params.yaml: data.source: got 'dicomweb', expected one of 'phantom'")
    # Built in code without params.yaml validation, prepare still refuses it and writes nothing.
    expect_error(lambda: prepare(DataConfig(source="dicomweb"), 0, tmp_path / "out"), tmp_path / "out",  # type: ignore[arg-type]
                 file=None, row=None, field=None, says="params.yaml: data.source: unknown source", kind=ParamError)


# ---------------------------------------------------------------- dataset layouts


def test_patient_in_two_official_splits_names_the_source_row(tmp_path: Path) -> None:
    """CheXpert: a patient listed in both train.csv (hash split) and valid.csv would leak across splits."""
    root = tmp_path / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABELS]
    for k, (name, rel) in enumerate((("train.csv", "train/patient00007/study1/view1_frontal.jpg"),
                                     ("valid.csv", "valid/patient00007/study2/view1_frontal.jpg"))):
        (root.parent / "CheXpert-v1.0-small" / rel).parent.mkdir(parents=True, exist_ok=True)
        gray(1 + k).save(root / rel)
        pd.DataFrame([[f"CheXpert-v1.0-small/{rel}", "Male", "50", "Frontal", "PA", *[""] * len(LABELS)]],
                     columns=header).to_csv(root / name, index=False)
    cfg = DataConfig(source="chexpert", image_size=16, workers=1, chexpert=ChexpertConfig(root=str(root)))
    # The train study gets a hash split other than "valid", so the patient would be in two splits.
    assert hash_split("patient00007", 0, cfg.split) != "valid"
    msg = expect_error(lambda: prepare(cfg, 0, tmp_path / "out"), tmp_path / "out", file=root, row=0, field="Path",
                       says="patient 'patient00007' appears in more than one split")
    assert f"file {root / 'train.csv'}" in msg or f"file {root / 'valid.csv'}" in msg
    assert ".tmp" not in msg  # not the temporary manifest, which no longer exists


def test_mimic_bad_report_files(tmp_path: Path) -> None:
    root = tmp_path / "mimic"
    folder = root / "files" / "p10" / "p10000032"
    (folder / "s50414267").mkdir(parents=True)
    gray(0).save(folder / "s50414267" / "d1.jpg")
    pd.DataFrame([("d1", "50414267", "10000032", "train")], columns=["dicom_id", "study_id", "subject_id", "split"]
                 ).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    pd.DataFrame([("d1", "PA")], columns=["dicom_id", "ViewPosition"]).to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
                                                                              index=False)
    cfg = DataConfig(source="mimic", image_size=16, workers=1,
                     mimic=MimicConfig(root=str(root), use_dataset_labels=False))
    out = tmp_path / "out"
    expect_error(lambda: prepare(cfg, 0, out), out, file=root / "mimic-cxr-2.0.0-split.csv.gz", row=0,
                 field="study_id", says="report file not found")
    report = folder / "s50414267.txt"
    report.write_bytes(b"FINDINGS: No effusion.\nIMPRESSION: Normal.\n COEUR: c\xe9ur normal.\n")
    expect_error(lambda: prepare(cfg, 0, out), out, file=report, row=None, field="report",
                 says="report is not valid UTF-8 (byte 0xe9")
    report.write_text("                FINAL REPORT\n\n")
    expect_error(lambda: prepare(cfg, 0, out), out, file=report, row=None, field="report", says="empty report")
    report.write_text("FINDINGS: No effusion.\n")
    (folder / "s50414267" / "d1.jpg").unlink()
    expect_error(lambda: prepare(cfg, 0, out), out, file=root / "mimic-cxr-2.0.0-split.csv.gz", row=0,
                 field="dicom_id", says="image file not found")


def test_nih_unknown_finding(tmp_path: Path) -> None:
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    (root / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID\n1.png,Effusion,0,1\n2.png,Efusion|Mass,0,2\n")
    cfg = DataConfig(source="nih", image_size=16, workers=1, nih=NihConfig(root=str(root)))
    expect_error(lambda: prepare(cfg, 0, tmp_path / "out"), tmp_path / "out", file=root / "Data_Entry_2017.csv",
                 row=1, field="Finding Labels", says="unknown NIH finding 'Efusion'")


def test_openi_report_problems(tmp_path: Path) -> None:
    root = tmp_path / "iu"
    (root / "images" / "images_normalized").mkdir(parents=True)
    cols = ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]
    pd.DataFrame([("1", "", "", "", "", "", "No effusion.", ""), ("2", "", "", "", "", "", "", "")], columns=cols
                 ).to_csv(root / "indiana_reports.csv", index=False)
    proj = pd.DataFrame([("1", "1.png", "Frontal"), ("3", "3.png", "Frontal")], columns=["uid", "filename", "projection"])
    proj.to_csv(root / "indiana_projections.csv", index=False)
    cfg = DataConfig(source="openi", image_size=16, workers=1, openi=OpenIConfig(root=str(root)))
    out = tmp_path / "out"
    expect_error(lambda: prepare(cfg, 0, out), out, file=root / "indiana_projections.csv", row=1, field="uid",
                 says="uid '3' has no row in indiana_reports.csv")
    proj.assign(uid=["1", "2"]).to_csv(root / "indiana_projections.csv", index=False)
    expect_error(lambda: prepare(cfg, 0, out), out, file=root / "indiana_reports.csv", row=1, field="findings",
                 says="empty report")


# ---------------------------------------------------------------- the stage: exit 2, one line, nothing lost


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def set_data_params(repo: Path, **data) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(data)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_stage_bad_input_exits_2_and_keeps_earlier_output(fresh_repo: Path, dataset: Path) -> None:
    stage = [sys.executable, "stages/prepare.py"]
    run(stage, fresh_repo)  # a good run (tiny phantom) first
    before = {name: tree_digest(fresh_repo / name) for name in ("data", "metrics")}
    assert "prepared/pairs.parquet" in before["data"] and "data.json" in before["metrics"]

    (dataset / "imgs" / "a.png").unlink()
    (dataset / "imgs" / "bad.png").write_bytes(b"garbage")
    latin = dataset / "latin.csv"
    latin.write_bytes(b"image,report\nimgs/b.png,Heart size is normal.\nimgs/c.jpg,C\xe9ur normal.\n")
    csv_cfg = {"path": str(dataset / "pairs.csv"), "image_column": "image", "report_column": "report"}
    cases = [  # (params.data overrides, what the error line must name)
        ({"source": "csv", "csv": csv_cfg}, ["image file not found", "pairs.csv", "row 0", "field 'image'"]),
        ({"source": "csv", "csv": {**csv_cfg, "path": str(latin)}, "workers": 2},
         ["not valid UTF-8", "latin.csv", "row 1", "field 'report'"]),
        ({"source": "mri"}, ["params.yaml: data.source", "'mri'"]),
        ({"image_size": 30}, ["params.yaml: data.image_size", "multiple of 8"]),
    ]
    for data, names in cases:
        params_before = (fresh_repo / "params.yaml").read_text()
        set_data_params(fresh_repo, **data)
        proc = run(stage, fresh_repo, check=False)
        (fresh_repo / "params.yaml").write_text(params_before)
        assert proc.returncode == 2, (data, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stderr
        for name in names:
            assert name in lines[0], (name, lines[0])
        after = {name: tree_digest(fresh_repo / name) for name in ("data", "metrics")}
        assert after == before, f"{data}: an earlier output changed or a temp file was left"

    # A corrupt image found by a pool worker: the same one-line error.
    write_rows(dataset, [("imgs/b.png", "p2", "No effusion."), ("imgs/bad.png", "p5", "No effusion.")])
    set_data_params(fresh_repo, source="csv", csv=csv_cfg, workers=2)
    proc = run(stage, fresh_repo, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "cannot decode image" in proc.stderr and "row 1" in proc.stderr and "bad.png" in proc.stderr
    assert {name: tree_digest(fresh_repo / name) for name in ("data", "metrics")} == before


# ---------------------------------------------------------------- hostile input: paths, duplicate films, sizes


def prepared_once(dataset: Path, out: Path, **csv_kw) -> dict[str, str]:
    """A good prepare into `out` first (what a bad run must leave untouched); its files' digests."""
    prepare_csv(dataset, out, **csv_kw)
    return tree_digest(out)


def expect_refused(fn: Callable[[], object], out: Path, before: dict[str, str], *, file: Path | None, row: int | None,
                   field: str | None, says: str, kind: type[PairaugError] = InputError) -> str:
    """`fn` fails with one line naming file, row and field; the earlier output in `out` is unchanged."""
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and says in msg, msg
    for name, value in (("file", file), ("row", row), ("field", field)):
        if value is not None:
            assert {"file": f"file {value}", "row": f"row {value}", "field": f"field '{value}'"}[name] in msg, msg
    assert tree_digest(out) == before, "an earlier output changed"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == [], "temp left behind"
    return msg


@pytest.mark.parametrize(("cell", "says"), [
    ("../outside.png", "leaves the image root"),
    ("imgs/../../outside.png", "leaves the image root"),
    (None, "is absolute"),  # the outside image's absolute path
])
def test_image_path_outside_the_root_is_refused(dataset: Path, tmp_path: Path, cell: str | None, says: str) -> None:
    """A CSV cell naming a real image outside the image root is refused, not read."""
    outside = tmp_path / "outside.png"
    gray(7).save(outside)
    before = prepared_once(dataset, tmp_path / "out")
    write_rows(dataset, [*GOOD_ROWS[:2], (cell or str(outside), "p9", "Lungs are clear."), *GOOD_ROWS[2:]])
    msg = expect_refused(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", before,
                         file=dataset / "pairs.csv", row=2, field="image", says=says)
    assert str(dataset) in msg  # the root it had to stay in


def test_image_root_param_is_the_boundary(dataset: Path, tmp_path: Path) -> None:
    """With `image_root` set, paths are confined to it, not to the CSV's folder."""
    (dataset / "other").mkdir()
    gray(8).save(dataset / "other" / "x.png")
    write_rows(dataset, [("x.png", "p1", "Lungs are clear."), ("../imgs/a.png", "p2", "Lungs are clear.")])
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out", image_root=str(dataset / "other")), tmp_path / "out",
                 file=dataset / "pairs.csv", row=1, field="image",
                 says=f"'../imgs/a.png' leaves the image root {dataset / 'other'}")


def _layout_escaping_root(source: str, root: Path) -> DataConfig:
    """A minimal `source` layout under `root` whose only table row names an image outside `root`."""
    outside = root.parent / "outside.jpg"
    gray(5).save(outside)
    if source == "mimic":
        folder = root / "files" / "p10" / "p10000032"
        folder.mkdir(parents=True)
        (folder / "s50414267.txt").write_text("FINDINGS: No effusion.\n")
        dicom = "../" * 5 + "outside"  # files/p10/p10000032/s50414267/<dicom>.jpg climbs out of root
        pd.DataFrame([(dicom, "50414267", "10000032", "train")], columns=["dicom_id", "study_id", "subject_id", "split"]
                     ).to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
        pd.DataFrame([(dicom, "PA")], columns=["dicom_id", "ViewPosition"]).to_csv(root / "mimic-cxr-2.0.0-metadata.csv",
                                                                                 index=False)
        return DataConfig(source="mimic", image_size=16, workers=1, mimic=MimicConfig(root=str(root), use_dataset_labels=False))
    if source == "openi":
        (root / "images" / "images_normalized").mkdir(parents=True)
        pd.DataFrame([("1", "No effusion.", "Normal.")], columns=["uid", "findings", "impression"]
                     ).to_csv(root / "indiana_reports.csv", index=False)
        pd.DataFrame([("1", "../../../outside.jpg", "Frontal")], columns=["uid", "filename", "projection"]
                     ).to_csv(root / "indiana_projections.csv", index=False)
        return DataConfig(source="openi", image_size=16, workers=1, openi=OpenIConfig(root=str(root)))
    if source == "chexpert":
        root.mkdir(parents=True)
        pd.DataFrame([[f"{root.name}/../outside.jpg", "Frontal", "PA", *[""] * len(LABELS)]],
                     columns=["Path", "Frontal/Lateral", "AP/PA", *LABELS]).to_csv(root / "valid.csv", index=False)
        return DataConfig(source="chexpert", image_size=16, workers=1,
                          chexpert=ChexpertConfig(root=str(root), csv_files=["valid.csv"]))
    (root / "images").mkdir(parents=True)
    (root / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n../../outside.jpg,Effusion,1\n")
    return DataConfig(source="nih", image_size=16, workers=1, nih=NihConfig(root=str(root)))


@pytest.mark.parametrize(("source", "table", "field"), [
    ("mimic", "mimic-cxr-2.0.0-split.csv", "dicom_id"),
    ("openi", "indiana_projections.csv", "filename"),
    ("chexpert", "valid.csv", "Path"),
    ("nih", "Data_Entry_2017.csv", "Image Index"),
])
def test_every_adapter_confines_image_paths(tmp_path: Path, source: str, table: str, field: str) -> None:
    root = tmp_path / "dataset"
    cfg = _layout_escaping_root(source, root)
    expect_error(lambda: prepare(cfg, 0, tmp_path / "out"), tmp_path / "out", file=root / table, row=0, field=field,
                 says="leaves the image root")


def test_mimic_report_path_is_confined(tmp_path: Path) -> None:
    """The study id builds the report file's path too: it may not climb out of reports_root."""
    root = tmp_path / "mimic"
    (root / "files").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("FINDINGS: not a report of this dataset.\n")
    study = "/../../../../../secret"  # files/p10/p10000032/s<study>.txt climbs out of the root
    pd.DataFrame([("d1", study, "10000032", "train")], columns=["dicom_id", "study_id", "subject_id", "split"]
                 ).to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    pd.DataFrame([("d1", "PA")], columns=["dicom_id", "ViewPosition"]).to_csv(root / "mimic-cxr-2.0.0-metadata.csv",
                                                                             index=False)
    cfg = DataConfig(source="mimic", image_size=16, workers=1, mimic=MimicConfig(root=str(root), use_dataset_labels=False))
    expect_error(lambda: prepare(cfg, 0, tmp_path / "out"), tmp_path / "out", file=root / "mimic-cxr-2.0.0-split.csv",
                 row=0, field="study_id", says="report path")


def patients_in_two_splits() -> tuple[str, str]:
    """Two patient ids the hash split puts in different splits."""
    split_of = {f"q{i}": hash_split(f"q{i}", 0, DataConfig().split) for i in range(50)}
    first = next(p for p, s in split_of.items() if s == "train")
    return first, next(p for p, s in split_of.items() if s != "train")


@pytest.mark.parametrize("workers", [1, 2])
def test_same_film_in_two_splits_is_refused(dataset: Path, tmp_path: Path, workers: int) -> None:
    """One film under two patient ids would sit in train and test: found by its pixels, not its name."""
    before = prepared_once(dataset, tmp_path / "out")
    with Image.open(dataset / "imgs" / "a.png") as im:
        im.save(dataset / "imgs" / "copy.png", compress_level=1)  # other bytes, other name, same pixels
    assert (dataset / "imgs" / "copy.png").read_bytes() != (dataset / "imgs" / "a.png").read_bytes()
    train_patient, other_patient = patients_in_two_splits()
    write_rows(dataset, [("imgs/a.png", train_patient, "Mild cardiomegaly."), *GOOD_ROWS[1:],
                         ("imgs/copy.png", other_patient, "Mild cardiomegaly.")])
    msg = expect_refused(lambda: prepare_csv(dataset, tmp_path / "out", workers=workers), tmp_path / "out", before,
                         file=dataset / "pairs.csv", row=4, field="image", says="same film (identical pixels) as row 0")
    assert f"patient {train_patient!r}, split train" in msg and f"patient {other_patient!r}" in msg


def test_same_film_twice_in_one_split_is_kept(dataset: Path, tmp_path: Path) -> None:
    """Within one split a repeated film leaks nothing (e.g. a study listed under two ids): it is kept."""
    rows = [(*r, f"s{k}") for k, r in enumerate(GOOD_ROWS)] + [("imgs/a.png", "p1", "Cardiomegaly, mild.", "s9")]
    write_rows(dataset, rows, columns=("image", "patient_id", "report", "study"))
    df = prepare_csv(dataset, tmp_path / "out", study_column="study")
    assert len(df) == 5 and df["pair_id"].is_unique


def test_same_base_name_in_two_folders_is_two_pairs(dataset: Path, tmp_path: Path) -> None:
    """a/1.png and b/1.png in one study are two films: the pair id hashes the path under the root."""
    for k, folder in enumerate(("a", "b")):
        (dataset / folder).mkdir()
        gray(20 + k).save(dataset / folder / "1.png")
    rows = [("a/1.png", "p1", "s1", "Mild cardiomegaly."), ("b/1.png", "p1", "s1", "Mild cardiomegaly.")]
    write_rows(dataset, rows, columns=("image", "patient_id", "study", "report"))
    df = prepare_csv(dataset, tmp_path / "out", study_column="study")
    assert len(df) == 2 and df["pair_id"].is_unique and set(df["study_id"]) == {"s1"}
    # Spelling the same path differently is still the same pair.
    write_rows(dataset, [*rows, ("./a//1.png", "p1", "s1", "Mild cardiomegaly.")],
               columns=("image", "patient_id", "study", "report"))
    expect_error(lambda: prepare_csv(dataset, tmp_path / "out2", study_column="study"), tmp_path / "out2",
                 file=dataset / "pairs.csv", row=2, field="image", says="duplicate pair")


@pytest.mark.parametrize(("h", "w"), [(1, 1), (15, 40), (40, 15)])
def test_image_below_the_minimum_size_is_refused(dataset: Path, tmp_path: Path, h: int, w: int) -> None:
    before = prepared_once(dataset, tmp_path / "out")
    gray(3, h, w).save(dataset / "imgs" / "tiny.png")
    write_rows(dataset, [*GOOD_ROWS, ("imgs/tiny.png", "p9", "Lungs are clear.")])
    msg = expect_refused(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", before,
                         file=dataset / "pairs.csv", row=4, field="image",
                         says=f"image is {w}x{h} px; a source film must be at least 16 px on each side")
    assert str(dataset / "imgs" / "tiny.png") in msg


def test_image_at_the_minimum_size_is_kept(dataset: Path, tmp_path: Path) -> None:
    gray(3, 16, 16).save(dataset / "imgs" / "small.png")
    write_rows(dataset, [*GOOD_ROWS, ("imgs/small.png", "p9", "Lungs are clear.")])
    assert len(prepare_csv(dataset, tmp_path / "out")) == 5


def test_header_only_csv_names_the_file(dataset: Path, tmp_path: Path) -> None:
    before = prepared_once(dataset, tmp_path / "out")
    (dataset / "pairs.csv").write_text("image,patient_id,report\n")
    expect_refused(lambda: prepare_csv(dataset, tmp_path / "out"), tmp_path / "out", before,
                   file=dataset / "pairs.csv", row=None, field=None, says="no data rows (only a header)")


def test_stage_refuses_hostile_input_with_exit_2(fresh_repo: Path, dataset: Path, tmp_path: Path) -> None:
    """Each hostile case through `python stages/prepare.py`: exit 2, one line, earlier outputs unchanged."""
    stage = [sys.executable, "stages/prepare.py"]
    run(stage, fresh_repo)  # a good run (tiny phantom) first
    before = {name: tree_digest(fresh_repo / name) for name in ("data", "metrics")}

    gray(7).save(tmp_path / "outside.png")
    gray(3, 1, 1).save(dataset / "imgs" / "dot.png")
    with Image.open(dataset / "imgs" / "a.png") as im:
        im.save(dataset / "imgs" / "copy.png", compress_level=1)
    (dataset / "header.csv").write_text("image,report\n")
    train_patient, other_patient = patients_in_two_splits()
    tables = {
        "outside.csv": [*GOOD_ROWS[:1], ("../outside.png", "p9", "Lungs are clear.")],
        "dup.csv": [("imgs/a.png", train_patient, "Mild cardiomegaly."), ("imgs/copy.png", other_patient, "Edema.")],
        "dot.csv": [*GOOD_ROWS[:1], ("imgs/dot.png", "p9", "Lungs are clear.")],
    }
    for name, rows in tables.items():
        pd.DataFrame(rows, columns=["image", "patient_id", "report"]).to_csv(dataset / name, index=False)
    cases = {  # CSV → what the error line must name
        "outside.csv": ["'../outside.png' leaves the image root", "outside.csv", "row 1", "field 'image'"],
        "dup.csv": ["same film (identical pixels) as row 0", "dup.csv", "row 1", "field 'image'"],
        "dot.csv": ["image is 1x1 px", "at least 16 px", "dot.png", "dot.csv", "row 1"],
        "header.csv": ["no data rows (only a header)", "header.csv"],
    }
    params_before = (fresh_repo / "params.yaml").read_text()
    for name, names in cases.items():
        set_data_params(fresh_repo, source="csv", workers=2, csv={"path": str(dataset / name)})
        proc = run(stage, fresh_repo, check=False)
        (fresh_repo / "params.yaml").write_text(params_before)
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        for part in names:
            assert part in lines[0], (part, lines[0])
        assert {n: tree_digest(fresh_repo / n) for n in ("data", "metrics")} == before, f"{name}: an output changed"


# ---------------------------------------------------------------- params.yaml: unknown top-level sections


def test_unknown_section_is_refused_with_the_near_name(tmp_path: Path) -> None:
    for typo, near in (("dataa", "data"), ("genrate", "generate"), ("Prune", "prune")):
        (tmp_path / "params.yaml").write_text(f"seed: 0\ndata:\n  image_size: 32\n{typo}:\n  steps: 3\n")
        with pytest.raises(ParamError) as e:
            load_params(tmp_path / "params.yaml")
        assert str(e.value).startswith(f"params.yaml: {typo}: unknown section (did you mean '{near}'? known: seed, "), e.value
    (tmp_path / "params.yaml").write_text("seed: 0\nzzz: 1\n")
    with pytest.raises(ParamError, match=r"params.yaml: zzz: unknown section \(known: seed, replicates, launch, data"):
        load_params(tmp_path / "params.yaml")


def test_the_known_sections_are_params_yaml_and_dvc_yaml() -> None:
    """SECTIONS is the one list: equal to params.yaml's top-level keys, and it holds every dvc.yaml params name."""
    assert list(yaml.safe_load((REPO / "params.yaml").read_text())) == list(SECTIONS)
    declared = {str(p).split(".")[0] for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
                for p in (stage.get("do", stage).get("params") or [])}
    assert declared <= set(SECTIONS) and declared, declared
    with pytest.raises(ValueError, match="not in pairaug.params.SECTIONS"):
        section(DataConfig, {"dataa": {}}, "dataa")


def test_every_stage_refuses_an_unknown_section(fresh_repo: Path, monkeypatch, capsys) -> None:
    """`genrate:` in params.yaml: every stage command in dvc.yaml exits 2 naming it, before writing anything."""
    with (fresh_repo / "params.yaml").open("a") as f:
        f.write("genrate:\n  steps: 3\n")
    stages = yaml.safe_load((fresh_repo / "dvc.yaml").read_text())["stages"]
    commands = sorted({stage.get("do", stage)["cmd"].replace("${key}", "none") for stage in stages.values()})
    assert len(commands) >= 11
    monkeypatch.chdir(fresh_repo)
    for cmd in commands:  # in this process (as `python <script> <args>` would run it): one torch import for all
        python, script, *args = shlex.split(cmd)
        assert python == "python"
        monkeypatch.setattr(sys, "argv", [script, *args])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(script, run_name="__main__")
        err = capsys.readouterr().err
        assert exit_.value.code == 2, (cmd, err)
        assert err.strip().splitlines()[-1].startswith(
            "error: params.yaml: genrate: unknown section (did you mean 'generate'?"), (cmd, err)
    assert not [p for p in (fresh_repo / "data").rglob("*") if p.name != ".gitkeep"], "a stage wrote data"
    assert not (fresh_repo / "metrics").exists() or not any((fresh_repo / "metrics").rglob("*"))
