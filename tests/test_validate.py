"""`validate`: the GX quality gate passes good pruned pairs and stops on each kind of bad pair, naming the
failed expectation, without touching anything upstream. Runs the committed gx/ project (file mode)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_prune import SIZE, make_world, sources

from pairaug.data.phantom import iter_studies, render
from pairaug.data.schema import LABELS, pairs_frame
from pairaug.errors import QualityGateError
from pairaug.hashing import file_digest
from pairaug.io import save_png
from pairaug.prune import finalize, load_candidates
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.validate import validate_pairs

REPO = Path(__file__).resolve().parents[1]


def committed_gx(dest: Path) -> None:
    """The repository's gx/ project as a clone has it (no uncommitted/)."""
    shutil.copytree(REPO / "gx", dest / "gx", ignore=shutil.ignore_patterns("uncommitted"))


def tree_digest(folder: Path, skip: str | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not (skip and skip in p.parts)}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A world whose pruned pairs are all good: every candidate kept, scores above their thresholds."""
    root = tmp_path_factory.mktemp("validate-base")
    make_world(root)
    cands = load_candidates(sources(root))
    rng = np.random.default_rng(0)
    intra = (cands["branch"] == "intra").to_numpy()
    cands["s_a"] = np.where(intra, np.nan, rng.uniform(0.4, 0.9, len(cands)))
    cands["tau"] = np.where(intra, np.nan, 0.3)
    for k, thr in (("s1", 0.2), ("s2", 0.5), ("s3", 0.1)):
        cands[k] = np.where(intra, rng.uniform(thr + 0.05, 0.95, len(cands)), np.nan)
        cands[f"thr_{k}"] = np.where(intra, thr, np.nan)
    cands["kept"], cands["reason"], cands["review"] = True, "kept", ""
    out = root / "data" / "pruned"
    pairs = finalize(cands, out).drop(columns=["kept", "reason"])
    out.mkdir(parents=True)
    pairs.to_parquet(out / "pairs.parquet", index=False)
    # the memorisation check's verdict on every generated image: no near-copy (test_privacy computes it)
    generated = pairs[pairs["branch"] != "paraphrase"]
    (root / "data" / "privacy").mkdir(parents=True)
    pd.DataFrame({"pair_id": generated["pair_id"], "near_copy": False}).to_parquet(
        root / "data" / "privacy" / "images.parquet", index=False)
    committed_gx(root)
    write_pool(root / "data" / "pool")
    return root


def write_pool(folder: Path) -> None:
    """A small phantom public pool: the films the probe behind change_read is fit on."""
    rows = []
    for i, s in enumerate(iter_studies(0, "train", 30, population="pool")):
        rel = f"images/{i}.png"
        save_png(render(s, SIZE), folder / rel)
        rows.append({"pair_id": f"pool{i}", "patient_id": s.patient_id, "study_id": s.study_id, "split": "train",
                     "image": rel, "report": s.report, "view": "PA", **s.labels(), "label_source": "phantom"})
    pairs_frame(rows).to_parquet(folder / "pairs.parquet")


def run_gate(root: Path, data_docs: bool = False) -> dict:
    # This world's intra films are random patterns that show no finding: the change_read bound has its
    # own test on phantom edits (test_intra_gate.py); here it is held at 0 (the fact is still computed).
    return validate_pairs(ValidateConfig(data_docs=data_docs, min_change_read=0.0),
                          pruned=root / "data/pruned/pairs.parquet", prepared=root / "data/prepared/pairs.parquet",
                          out_dir=root / "data/validated", metrics_path=root / "metrics/validate.json", gx_root=root,
                          pool=root / "data/pool/pairs.parquet", privacy=root / "data/privacy/images.parquet")


def test_good_pairs_pass_and_are_written(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "w"
    shutil.copytree(base, root)
    gx_before = tree_digest(root / "gx")
    edit_pairs(accepted_under_threshold)(root)  # pairs a reviewer accepted pass under their thresholds
    info = run_gate(root)
    assert info["success"] and info["failed"] == 0 and info["expectations"] >= 40
    assert info["rows_per_branch"] == {"image_only": 4, "inter": 4, "intra": 4, "paraphrase": 4}
    validated = pd.read_parquet(root / "data/validated/pairs.parquet")
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")
    pd.testing.assert_frame_equal(validated, pruned)
    # data/validated sits at the depth of data/pruned: the same relative image paths resolve.
    assert all((root / "data/validated" / rel).is_file() for rel in validated["image"])
    result = json.loads((root / "data/validated/result.json").read_text())
    assert result["success"] and "validation_time" not in result["meta"]  # no run time: same bytes per rerun
    assert json.loads((root / "metrics/validate.json").read_text())["success"] is True
    # The GX run reads the committed project and writes only under gx/uncommitted.
    assert tree_digest(root / "gx", skip="uncommitted") == gx_before


# ------------------------------------------------------------------------------ breaking each rule


def _pairs(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "data/pruned/pairs.parquet")


def _save(root: Path, df: pd.DataFrame) -> None:
    df.to_parquet(root / "data/pruned/pairs.parquet", index=False)


def _row(df: pd.DataFrame, branch: str, k: int = 0) -> int:
    return int(np.flatnonzero(df["branch"] == branch)[k])


def edit_pairs(change: Callable[[pd.DataFrame], None]) -> Callable[[Path], None]:
    def go(root: Path) -> None:
        df = _pairs(root)
        change(df)
        _save(root, df)
    return go


def missing_image(root: Path) -> None:
    df = _pairs(root)
    (root / "data/pruned" / df["image"].iat[_row(df, "inter")]).unlink()


def corrupt_image(root: Path) -> None:
    df = _pairs(root)
    path = root / "data/pruned" / df["image"].iat[_row(df, "intra")]
    path.write_bytes(path.read_bytes()[:60])  # a truncated PNG: the header reads, the pixels do not


def tampered_image(root: Path) -> None:
    df = _pairs(root)
    path = root / "data/pruned" / df["image"].iat[_row(df, "image_only")]
    pixels = np.array(Image.open(path))
    pixels[0, 0] ^= 1  # one pixel changed: still a valid image of the right size, but not the recorded one
    Image.fromarray(pixels).save(path)


def wrong_size(root: Path) -> None:
    df = _pairs(root)
    i = _row(df, "inter", 1)
    path = root / "data/pruned" / df["image"].iat[i]
    Image.open(path).resize((16, 16)).save(path)
    df.loc[i, "image_sha256"] = file_digest(path)
    _save(root, df)


def rgb_image(root: Path) -> None:
    df = _pairs(root)
    i = _row(df, "inter", 2)
    path = root / "data/pruned" / df["image"].iat[i]
    Image.open(path).convert("RGB").save(path)
    df.loc[i, "image_sha256"] = file_digest(path)
    _save(root, df)


def too_long(df: pd.DataFrame) -> None:
    df.loc[_row(df, "inter"), "report"] = "FINDINGS: " + " ".join(["clear"] * 55) + "."


def leaked_test_patient(df: pd.DataFrame) -> None:
    i = _row(df, "intra")
    df.loc[i, "source_pair_id"], df.loc[i, "patient_id"] = "real05", "p4"  # a test-split pair and patient


def under_threshold(df: pd.DataFrame) -> None:
    df.loc[_row(df, "inter"), "s_a"] = 0.1  # τ is 0.3: this pair should have been pruned


def rejected_but_kept(df: pd.DataFrame) -> None:
    df.loc[_row(df, "paraphrase"), "review"] = "reject"  # a reviewer rejected it: prune must never keep it


def accepted_under_threshold(df: pd.DataFrame) -> None:
    # prune.review.accepted_override: a reviewer accepted these, so they are kept whatever their scores
    df.loc[_row(df, "inter"), ["s_a", "review"]] = [0.1, "accept"]
    i = _row(df, "intra", 1)
    df.loc[i, ["s2", "review"]] = [df.loc[i, "thr_s2"], "accept"]


def intra_under_threshold(df: pd.DataFrame) -> None:
    i = _row(df, "intra", 1)
    df.loc[i, "s2"] = df.loc[i, "thr_s2"]  # equal is not above: S_k must exceed μ_k/s − λ


def identical_report(df: pd.DataFrame) -> None:
    i = _row(df, "paraphrase")
    df.loc[i, "report"] = "  " + df.loc[i, "source_report"].upper()  # same text up to case and spacing


def labels_unchanged(root: Path) -> None:
    df = _pairs(root)
    real = pd.read_parquet(root / "data/prepared/pairs.parquet").set_index("pair_id")
    inter = (df["branch"] == "inter").to_numpy()
    for label in LABELS:  # the "opposite" reports now carry their source's labels
        df.loc[inter, label] = real.loc[df.loc[inter, "source_pair_id"], label].to_numpy()
    _save(root, df)


def duplicate_id(df: pd.DataFrame) -> None:
    df.loc[_row(df, "intra"), "pair_id"] = df["pair_id"].iat[_row(df, "inter")]


def score_out_of_range(df: pd.DataFrame) -> None:
    df.loc[_row(df, "intra", 2), "s1"] = 1.5


def unknown_source(df: pd.DataFrame) -> None:
    df.loc[_row(df, "image_only"), "source_pair_id"] = "ghost"


def empty_report(df: pd.DataFrame) -> None:
    df.loc[_row(df, "paraphrase", 1), "report"] = "   "


def missing_column(df: pd.DataFrame) -> None:
    df.drop(columns=["image_sha256"], inplace=True)


# The breakages the issue names, one per run: each must fail naming its expectation.
CASES = {
    "missing image": (missing_image, "expect_column_values_to_be_in_set(image_exists in [True])"),
    "corrupt file": (corrupt_image, "expect_column_values_to_be_in_set(image_decodes in [True])"),
    "too-long report": (edit_pairs(too_long),
                        "expect_column_values_to_be_between(word_count <= 50 where branch != 'image_only')"),
    "leaked test patient": (edit_pairs(leaked_test_patient), "expect_column_values_to_be_in_set(patient_split in ['train'])"),
    "tampered hash": (tampered_image, "expect_column_values_to_be_in_set(sha256_matches in [True])"),
    "kept pair under threshold": (edit_pairs(under_threshold),
                                  "expect_column_pair_values_a_to_be_greater_than_b(s_a > tau where branch != 'intra' and review != 'accept')"),
    "missing column": (edit_pairs(missing_column), "expect_table_columns_to_match_set(columns include 32 required): "
                                                   "observed missing ['image_sha256']"),
}
# The other rules, broken together on distinct rows (one GX run): exactly these must fail.
OTHERS = {
    "expect_column_pair_values_to_be_equal(image_height == expected_height)": wrong_size,
    "expect_column_pair_values_to_be_equal(image_width == expected_width)": None,  # the same 16 px image
    "expect_column_values_to_be_in_set(image_mode in ['L'])": rgb_image,
    "expect_column_values_to_be_between(1 <= word_count)": edit_pairs(empty_report),
    "expect_column_values_to_not_be_null(source_split not null)": edit_pairs(unknown_source),
    "expect_column_pair_values_a_to_be_greater_than_b(s2 > thr_s2 where branch == 'intra' and review != 'accept')":
        edit_pairs(intra_under_threshold),
    "expect_column_values_to_be_in_set(review in ['', 'accept', 'flag'])": edit_pairs(rejected_but_kept),
    "expect_column_values_to_be_in_set(identical_to_source in [False] where branch != 'image_only')":
        edit_pairs(identical_report),
    "expect_column_values_to_be_in_set(label_changed in [True], mostly 0.9 where branch == 'inter')": labels_unchanged,
    "expect_column_values_to_be_unique(pair_id unique)": edit_pairs(duplicate_id),
    "expect_column_values_to_be_between(-1 <= s1 <= 1)": edit_pairs(score_out_of_range),
}


def _broken(base: Path, tmp_path: Path, breakers) -> tuple[Path, dict]:
    root = tmp_path / "w"
    shutil.copytree(base, root)
    for breaker in breakers:
        if breaker:
            breaker(root)
    return root, {d: tree_digest(root / "data" / d) for d in ("pruned", "prepared", "synthetic", "rewritten")}


def _check_stopped(root: Path, upstream: dict) -> tuple[str, dict]:
    with pytest.raises(QualityGateError) as err:
        run_gate(root)
    message = str(err.value)
    assert "\n" not in message and message.startswith("quality gate failed:")
    # Nothing upstream lost or changed; nothing for pretrain to read; the summary says why.
    assert {d: tree_digest(root / "data" / d) for d in upstream} == upstream
    assert not (root / "data/validated").exists()
    summary = json.loads((root / "metrics/validate.json").read_text())
    assert summary["success"] is False
    return message, summary


@pytest.mark.parametrize("case", list(CASES))
def test_each_named_breakage_stops_the_gate(base: Path, tmp_path: Path, case: str) -> None:
    breaker, expectation = CASES[case]
    root, upstream = _broken(base, tmp_path, [breaker])
    message, summary = _check_stopped(root, upstream)
    assert expectation in message, message
    assert any(expectation in f for f in summary["failures"])
    if case in ("too-long report", "kept pair under threshold", "leaked test patient"):  # the pair is named
        df = _pairs(root)
        assert df["pair_id"].iat[_row(df, "intra" if case == "leaked test patient" else "inter")] in message


def test_every_other_rule_is_enforced(base: Path, tmp_path: Path) -> None:
    root, upstream = _broken(base, tmp_path, OTHERS.values())
    message, summary = _check_stopped(root, upstream)
    failed = {f.split(":")[0] for f in summary["failures"]}
    assert failed == set(OTHERS), message
