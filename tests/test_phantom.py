"""The phantom: deterministic, realistic prevalence, repeat studies, a fixed test split, sized images."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pairaug.data import phantom
from pairaug.data.prepare import DataConfig, PhantomConfig, prepare


def studies(seed: int, n: int = 60, split: str = "train") -> list[phantom.Study]:
    return list(phantom.iter_studies(seed, split, n, 3))


def test_deterministic_by_seed() -> None:
    a, b, c = studies(0, 30), studies(0, 30), studies(1, 30)
    assert [(s.study_id, s.report, s.labels()) for s in a] == [(s.study_id, s.report, s.labels()) for s in b]
    for s, t in zip(a[:10], b[:10]):
        assert np.array_equal(phantom.render(s, 32), phantom.render(t, 32))
    # Another seed: other patients (same ids, different anatomy, findings and reports).
    assert [s.report for s in a] != [s.report for s in c]
    assert not np.array_equal(phantom.render(a[0], 32), phantom.render(c[0], 32))


@pytest.mark.parametrize("size", [32, 48])
def test_render_size_is_a_param(size: int) -> None:
    img = phantom.render(studies(0, 1)[0], size)
    assert img.shape == (size, size) and img.dtype == np.uint8
    assert img.std() > 20  # a radiograph, not a flat field
    # Dark lungs beside a bright mediastinum: the middle column is brighter than the lung fields.
    mid, lung = img[:, size // 2 - 1 : size // 2 + 1].mean(), img[size // 4 : size // 2, size // 5].mean()
    assert mid > lung + 30


def test_prepare_image_size_param(tmp_path: Path) -> None:
    cfg = DataConfig(image_size=48, phantom=PhantomConfig(train_patients=3, valid_patients=1, test_patients=1), workers=1)
    df = prepare(cfg, 0, tmp_path / "out")
    for rel in df["image"]:
        with Image.open(tmp_path / "out" / rel) as im:
            assert (im.mode, im.size) == ("L", (48, 48))


def test_findings_change_the_image() -> None:
    """Each drawn finding changes the pixels of the same patient's film (it is visible at 32 px)."""
    base = next(s for s in studies(0, 200) if not s.findings)
    plain = phantom.render(base, 32).astype(int)
    for f in (phantom.Finding("Cardiomegaly", "large"), phantom.Finding("Pleural Effusion", "large", "right"),
              phantom.Finding("Pneumothorax", "large", "left"), phantom.Finding("Edema", "moderate", "bilateral"),
              phantom.Finding("Consolidation", "moderate", "right", "lower"),
              phantom.Finding("Atelectasis", "large", "left", "lower")):
        sick = phantom.Study(base.patient_id, base.study_id, base.split, base.anatomy, [f], seed=base.seed)
        diff = np.abs(phantom.render(sick, 32).astype(int) - plain)
        assert (diff > 40).sum() >= 8, f.name


def test_prevalence_is_realistic() -> None:
    all_studies = studies(0, 600)
    n = len(all_studies)
    counts = Counter(name for s in all_studies for name in {f.name for f in s.findings})
    for name in phantom.FINDINGS:
        assert 0.03 <= counts[name] / n <= 0.35, (name, counts[name] / n)
    normal = sum(not s.findings for s in all_studies) / n
    assert 0.25 <= normal <= 0.7
    # Co-occurrence through the heart-failure factor: edema is far more likely with cardiomegaly.
    with_cm = [s for s in all_studies if any(f.name == "Cardiomegaly" for f in s.findings)]
    without = [s for s in all_studies if s not in with_cm]
    edema = lambda group: sum(any(f.name == "Edema" for f in s.findings) for s in group) / len(group)  # noqa: E731
    assert edema(with_cm) > 2 * edema(without)


def test_patients_have_repeat_studies() -> None:
    all_studies = studies(0, 200)
    per_patient = Counter(s.patient_id for s in all_studies)
    assert sum(c > 1 for c in per_patient.values()) >= 20
    assert max(per_patient.values()) <= 3
    # A patient's studies share the anatomy but are distinct studies with their own report.
    pid = next(p for p, c in per_patient.items() if c > 1)
    mine = [s for s in all_studies if s.patient_id == pid]
    assert len({s.anatomy for s in mine}) == 1
    assert len({s.study_id for s in mine}) == len(mine)


def test_max_studies_param() -> None:
    assert all(s.study_id.endswith("-s0") for s in phantom.iter_studies(0, "train", 50, 1))


def _split_fingerprint(out: Path, df: pd.DataFrame, split: str) -> list[tuple]:
    part = df[df["split"] == split].sort_values("pair_id")
    return [(r.pair_id, r.report, hashlib.sha256((out / r.image).read_bytes()).hexdigest())
            for r in part.itertuples()]


def test_test_split_fixed_when_train_size_changes(tmp_path: Path) -> None:
    def run(train: int) -> tuple[Path, pd.DataFrame]:
        cfg = DataConfig(phantom=PhantomConfig(train_patients=train, valid_patients=3, test_patients=8), workers=1)
        out = tmp_path / f"train{train}"
        return out, prepare(cfg, 0, out)

    small_out, small = run(4)
    big_out, big = run(12)
    assert small["patient_id"][small["split"] == "train"].nunique() == 4
    assert big["patient_id"][big["split"] == "train"].nunique() == 12
    for split in ("test", "valid"):
        assert _split_fingerprint(small_out, small, split) == _split_fingerprint(big_out, big, split)
        assert len(_split_fingerprint(small_out, small, split)) > 0
    # The smaller train split is a prefix of the larger one (growing it only adds patients).
    assert set(small["pair_id"][small["split"] == "train"]) < set(big["pair_id"][big["split"] == "train"])


def test_phantom_manifest_labels_are_ground_truth(tmp_path: Path) -> None:
    cfg = DataConfig(phantom=PhantomConfig(train_patients=6, valid_patients=2, test_patients=2), workers=1)
    df = prepare(cfg, 5, tmp_path / "out")
    truth = {s.study_id: s for sp, n in (("train", 6), ("valid", 2), ("test", 2)) for s in phantom.iter_studies(5, sp, n, 3)}
    assert sorted(df["study_id"]) == sorted(truth)
    for row in df.itertuples(index=False):
        s = truth[row.study_id]
        assert row.split == s.split and row.report == s.report and row.label_source == "dataset"
        labels = s.labels()
        for name in (*phantom.FINDINGS, "No Finding"):
            assert df.loc[df["study_id"] == row.study_id, name].item() == labels[name]
