"""`prepare`: byte-identical reruns, real radiographs through the generic CSV adapter, atomic output."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from pairaug.data.images import load_gray
from pairaug.data.prepare import CsvConfig, DataConfig, PhantomConfig, prepare
from pairaug.data.samples import sample_grid
from pairaug.errors import InputError, ParamError
from pairaug.params import from_dict

TINY = PhantomConfig(train_patients=8, valid_patients=3, test_patients=4)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def real_cfg(real_cxr: Path, **kw) -> DataConfig:
    return DataConfig(source="csv", image_size=kw.pop("image_size", 64), csv=CsvConfig(path=str(real_cxr / "manifest.csv")),
                      **kw)


# ---------------------------------------------------------------- determinism


def test_same_params_same_bytes(tmp_path: Path) -> None:
    cfg = DataConfig(phantom=TINY, workers=1, chunk_size=7)
    prepare(cfg, 0, tmp_path / "a")
    prepare(cfg, 0, tmp_path / "b")
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert len(a) > 20 and "pairs.parquet" in a
    assert a == b
    # A different seed is a different dataset.
    prepare(cfg, 1, tmp_path / "c")
    assert tree_digest(tmp_path / "c")["pairs.parquet"] != a["pairs.parquet"]


def test_workers_do_not_change_bytes(tmp_path: Path, real_cxr: Path) -> None:
    for name, cfg in (("phantom", DataConfig(phantom=TINY)), ("csv", real_cfg(real_cxr))):
        one = prepare(replace(cfg, workers=1, chunk_size=3), 0, tmp_path / f"{name}1")
        two = prepare(replace(cfg, workers=2, chunk_size=256), 0, tmp_path / f"{name}2")
        pd.testing.assert_frame_equal(one, two)
        assert tree_digest(tmp_path / f"{name}1") == tree_digest(tmp_path / f"{name}2"), name


def test_pair_ids_do_not_depend_on_row_order(tmp_path: Path, real_cxr: Path) -> None:
    df = pd.read_csv(real_cxr / "manifest.csv", dtype=str, keep_default_na=False)
    df.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    fwd = prepare(real_cfg(real_cxr, workers=1), 0, tmp_path / "fwd")
    rev_csv = CsvConfig(path=str(tmp_path / "reversed.csv"), image_root=str(real_cxr))
    rev = prepare(DataConfig(source="csv", image_size=64, workers=1, csv=rev_csv), 0, tmp_path / "rev")
    assert rev["pair_id"].tolist() == fwd["pair_id"].tolist()[::-1]
    assert tree_digest(tmp_path / "fwd" / "images") == tree_digest(tmp_path / "rev" / "images")


# ---------------------------------------------------------------- real radiographs


def reference(path: Path, size: int) -> np.ndarray:
    """An independent gray, padded, resized version of a source radiograph."""
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        gray = ds.pixel_array.astype(np.float64)
    else:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"), dtype=np.float64)
    h, w = gray.shape
    side = max(h, w)
    canvas = np.zeros((side, side))
    canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = gray
    return np.asarray(Image.fromarray(canvas.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR))


def test_real_cxr_through_csv_adapter(tmp_path: Path, real_cxr: Path) -> None:
    out = tmp_path / "prepared"
    df = prepare(real_cfg(real_cxr, workers=1), 0, out, metrics_path=tmp_path / "metrics" / "data.json")
    src = pd.read_csv(real_cxr / "manifest.csv", dtype=str)
    assert df["patient_id"].tolist() == src["patient_id"].tolist()
    assert set(df["split"]) <= {"train", "valid", "test"}
    with Image.open(real_cxr / "tbx11k_h0001.png") as im:
        assert im.mode == "RGB"  # the fixture really holds the formats this test is about
    for rel, name in zip(df["image"], src["image"]):
        with Image.open(out / rel) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "L", (64, 64))
            got = np.asarray(im).astype(np.float64)
        assert got.std() > 30 and 40 < got.mean() < 220, f"{name}: blank or saturated"
        ref = reference(real_cxr / name, 64)
        corr = np.corrcoef(got.ravel(), ref.ravel())[0, 1]
        assert corr > 0.95, f"{name}: prepared image does not look like its source (r={corr:.2f})"
    # The reports are labelled by the report labeler.
    assert (df["label_source"] == "labeler").all()
    rows = {name: row for name, (_, row) in zip(src["image"], df.iterrows())}
    nih = rows["nih_00000001_000.png"]
    assert (nih["Cardiomegaly"], nih["Pleural Effusion"], nih["Pneumothorax"], nih["No Finding"]) == (1, 0, 0, 0)
    assert rows["nih_00027426_000.png"]["No Finding"] == 1
    assert rows["tbx11k_tb0005.png"]["Lung Opacity"] == 1
    assert rows["tbx11k_tb0005.png"]["Pneumonia"] == -1
    metrics = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert metrics["pairs"] == 5 and metrics["patients"] == 5 and metrics["source"] == "csv"
    assert sum(s["pairs"] for s in metrics["splits"].values()) == 5


def test_dicom_monochrome1_is_inverted(tmp_path: Path, real_cxr: Path) -> None:
    """A MONOCHROME1 film (white = low values) comes out the same way round as MONOCHROME2."""
    ds = pydicom.dcmread(real_cxr / "siim_pneumothorax_sample.dcm")
    normal = load_gray(real_cxr / "siim_pneumothorax_sample.dcm").astype(float)
    pixels = ds.pixel_array.astype(np.uint8)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # the sample is JPEG; write it raw
    ds.PixelData = (255 - pixels).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inverted.dcm")
    inverted = load_gray(tmp_path / "inverted.dcm").astype(float)
    assert np.corrcoef(normal.ravel(), inverted.ravel())[0, 1] > 0.99


# ---------------------------------------------------------------- outputs


def test_phantom_manifest_and_metrics(tmp_path: Path) -> None:
    df = prepare(DataConfig(phantom=TINY, workers=1), 0, tmp_path / "out", metrics_path=tmp_path / "data.json")
    assert df.groupby("split")["patient_id"].nunique().to_dict() == {"train": 8, "valid": 3, "test": 4}
    metrics = json.loads((tmp_path / "data.json").read_text())
    assert metrics["pairs"] == len(df) and metrics["splits"]["train"]["patients"] == 8
    assert metrics["splits"]["train"]["positive"]["No Finding"] == int((df[df.split == "train"]["No Finding"] == 1).sum())
    sample_grid(df, tmp_path / "out", tmp_path / "samples.png")
    with Image.open(tmp_path / "samples.png") as im:
        assert im.mode == "L" and im.size[0] > 128


def test_rerun_replaces_output_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "data" / "prepared"
    prepare(DataConfig(phantom=TINY, workers=1), 0, out)
    (out / "stale.txt").write_text("from an older run")
    small = PhantomConfig(train_patients=2, valid_patients=1, test_patients=1)
    df = prepare(DataConfig(phantom=small, workers=1), 0, out)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"pairs.parquet", *df["image"]}  # exactly the new output: no stale or half files
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"]  # no temp folders left


def test_failed_run_keeps_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare(DataConfig(phantom=TINY, workers=1), 0, out)
    before = tree_digest(out)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,report\nmissing.png,No effusion.\n")
    with pytest.raises(InputError):
        prepare(DataConfig(source="csv", csv=CsvConfig(path=str(bad)), workers=2), 0, out)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "prepared"]


def test_max_pairs(tmp_path: Path) -> None:
    df = prepare(DataConfig(phantom=TINY, workers=1, max_pairs=5), 0, tmp_path / "out")
    assert len(df) == 5 and len(list((tmp_path / "out" / "images").rglob("*.png"))) == 5


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"image_size": 30}, "data.image_size"),
        ({"image_size": 0}, "data.image_size"),
        ({"workers": 0}, "data.workers"),
        ({"split": {"train": 0.5, "valid": 0.1, "test": 0.1}}, "data.split"),
        ({"source": "csv"}, "data.csv.path"),
        ({"source": "mimic"}, "data.mimic.root"),
        ({"source": "dicomweb"}, "data.source"),
        ({"phantom": {"train_patients": "many"}}, "data.phantom.train_patients"),
        ({"imagesize": 32}, "data.imagesize"),
    ],
)
def test_bad_params_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ParamError) as e:
        from_dict(DataConfig, data, "data")
    assert str(e.value).startswith(f"params.yaml: {key}:")


