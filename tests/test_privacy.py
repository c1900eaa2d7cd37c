"""The memorisation check (`privacy` stage) and the datasheet on a small world: synthetic images unlike any
real film pass the gate; an exact copy of a train film planted among them is flagged and stops the gate.
The world is test_validate's (real pairs, rewrites, three synthetic manifests, every candidate kept) with
the generated images redrawn so they resemble no real film, scored by a tiny real CLIP folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_prune import CARDIO, EFFUSION, NORMAL, WORSE, make_scorer
from test_validate import base  # noqa: F401 - the world, a module fixture

from pairaug.errors import InputError, QualityGateError
from pairaug.hashing import file_digest
from pairaug.models.scorer import load_scorer
from pairaug.quality.datasheet import DatasheetSources, counts, render
from pairaug.quality.gate import ValidateConfig
from pairaug.quality.privacy import (
    PrivacyConfig,
    Sources,
    check_memorisation,
    nearest,
    pixel_vectors,
    write_outputs,
)
from pairaug.quality.validate import validate_pairs
from pairaug.tracking.runs import datasheet_describes


def _field(rng: np.random.Generator) -> np.ndarray:
    """A smooth random field: nothing like the films' vertical band."""
    coarse = rng.uniform(0, 255, (4, 4)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC))


def set_image(root: Path, pair_id: str, pixels: np.ndarray | None = None, copy_of: Path | None = None) -> None:
    """Replace a synthetic pair's image (new pixels, or a byte copy of a real film) and record its new hash
    in its manifest and the pruned pairs, as a generator that drew it would have."""
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")
    row = pruned.index[pruned["pair_id"] == pair_id][0]
    path = root / "data/pruned" / pruned.at[row, "image"]
    path.unlink()
    if copy_of is not None:
        shutil.copy(copy_of, path)
    else:
        Image.fromarray(pixels).save(path)
    sha = file_digest(path)
    pruned.at[row, "image_sha256"] = sha
    pruned.to_parquet(root / "data/pruned/pairs.parquet", index=False)
    manifest_path = root / "data/synthetic" / pruned.at[row, "branch"] / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    manifest.loc[manifest["pair_id"] == pair_id, "image_sha256"] = sha
    manifest.to_parquet(manifest_path, index=False)


@pytest.fixture(scope="module")
def world(base: Path, tmp_path_factory) -> Path:  # noqa: F811 - the fixture imported above
    root = tmp_path_factory.mktemp("privacy") / "w"
    shutil.copytree(base, root)
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")
    rng = np.random.default_rng(7)
    for pair_id in pruned.loc[pruned["branch"] != "paraphrase", "pair_id"]:
        set_image(root, pair_id, _field(rng))
    make_scorer(root / "models/scorer", [NORMAL, CARDIO, EFFUSION, WORSE])
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")  # every candidate was kept
    pruned.assign(kept=True, reason="kept").to_parquet(root / "data/pruned/candidates.parquet", index=False)
    return root


def sources(root: Path) -> Sources:
    return Sources(root / "data/prepared/pairs.parquet", root / "data/synthetic", root / "data/pruned/pairs.parquet",
                   root / "models/scorer")


def check(root: Path) -> tuple[pd.DataFrame, dict]:
    table, metrics, _ = check_memorisation(PrivacyConfig(), load_scorer(root / "models/scorer"), sources(root))
    write_outputs(table, root / "data/privacy")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/privacy.json").write_text(json.dumps(metrics))
    return table, metrics


def gate(root: Path) -> dict:
    # min_change_read 0: this world's intra films are random patterns (see test_validate.run_gate)
    return validate_pairs(ValidateConfig(data_docs=False, min_change_read=0.0), pruned=root / "data/pruned/pairs.parquet",
                          prepared=root / "data/prepared/pairs.parquet", out_dir=root / "data/validated",
                          metrics_path=root / "metrics/validate.json", gx_root=root, pool=root / "data/pool/pairs.parquet",
                          privacy=root / "data/privacy/images.parquet", mixes={"inter": ["inter"], "none": []},
                          datasheet=datasheet_sources(root))


def datasheet_sources(root: Path) -> DatasheetSources:
    return DatasheetSources(prepared=root / "data/prepared/pairs.parquet", rewritten=root / "data/rewritten",
                            synthetic=root / "data/synthetic", candidates=root / "data/pruned/candidates.parquet",
                            prune_metrics=root / "metrics/prune.json", privacy_metrics=root / "metrics/privacy.json",
                            validated=root / "data/validated", markdown=root / "metrics/datasheet.md",
                            json=root / "metrics/datasheet.json")


def test_nearest_excludes_the_query_s_own_group():
    ref = pixel_vectors(np.stack([np.eye(8, dtype=np.uint8) * 200, np.tri(8, dtype=np.uint8) * 90]), 8)
    query = ref[[0, 0]]
    idx, dist = nearest(query, ref, np.array([None, "p0"], dtype=object), np.array(["p0", "p1"], dtype=object))
    assert idx.tolist() == [0, 1] and dist[0] == pytest.approx(0, abs=1e-6) and dist[1] > 0.1
    flat = pixel_vectors(np.full((1, 8, 8), 77, np.uint8), 8)
    assert not flat.any()  # a flat film correlates with nothing (distance 1), never a division by zero


def test_without_a_copy_the_gate_passes_and_the_datasheet_is_written(world: Path, tmp_path: Path):
    root = tmp_path / "w"
    shutil.copytree(world, root)
    table, metrics = check(root)
    assert len(table) == 12 and set(table["branch"]) == {"inter", "intra", "image_only"}
    assert not table["near_copy"].any() and metrics["kept_near_copies"] == 0
    assert table["nn_pixel_distance"].between(0, 2).all() and table["nn_embedding_distance"].between(0, 2).all()
    assert metrics["branches"]["intra"]["own_source_film"]["within_thresholds"] == 0  # the fields are unlike the films
    intra = table[table["branch"] == "intra"]
    assert intra["source_pixel_distance"].notna().all() and table.loc[table["branch"] != "intra",
                                                                      "source_pixel_distance"].isna().all()
    th = metrics["thresholds"]
    assert 0 < th["pixel"] <= metrics["reference_valid_films"]["pixel_distance"]["median"]
    info = gate(root)
    assert info["success"]
    sheet = json.loads((root / "metrics/datasheet.json").read_text())
    assert sheet["quality_gate"]["success"] and sheet["memorisation"]["near_copies"] == 0
    assert sheet["counts"]["branches"]["inter"] == {"candidates": 4, "kept": 4, "reviewed": 0, "review_decisions": {},
                                                    "reasons": {"kept": 4}, "validated": 4}
    assert sheet["thresholds"]["near_copy_share_bound"] == pytest.approx(0.01)
    md = (root / "metrics/datasheet.md").read_text()
    for heading in ("Counts per branch", "Prompts", "Models and fingerprints", "Thresholds", "Label prevalence",
                    "Memorisation", "Quality gate", "0 pairs reviewed"):
        assert heading in md
    # pretrain logs it only with a model trained on the pairs it describes
    inter_md5 = sheet["validated"]["mixes"]["inter"]
    assert datasheet_describes(root, "inter", inter_md5) and not datasheet_describes(root, "inter", "0" * 32)


@pytest.mark.parametrize("branch", ["inter", "intra"])
def test_a_planted_copy_of_a_train_film_is_flagged_and_stops_the_gate(world: Path, tmp_path: Path, branch: str):
    root = tmp_path / "w"
    shutil.copytree(world, root)
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")
    victim = pruned[pruned["branch"] == branch].iloc[0]
    real = pd.read_parquet(root / "data/prepared/pairs.parquet").set_index("pair_id")
    patient = real.at[victim["source_pair_id"], "patient_id"]
    # another patient's train film (an intra image is an edit of its own patient's film by design)
    film = real[(real["split"] == "train") & (real["patient_id"] != patient)].iloc[0]
    set_image(root, victim["pair_id"], copy_of=root / "data/prepared" / film["image"])
    table, metrics = check(root)
    flagged = table[table["near_copy"]]
    assert flagged["pair_id"].tolist() == [victim["pair_id"]]
    assert flagged["nn_pixel_pair_id"].iloc[0] == film.name and flagged["nn_pixel_distance"].iloc[0] < 1e-6
    assert metrics["kept_near_copies"] == 1 and metrics["closest"][0]["pair_id"] == victim["pair_id"]
    with pytest.raises(QualityGateError, match=r"near_copy in \[False\], mostly 0.99.*" + victim["pair_id"]):
        gate(root)
    assert not (root / "data/validated").exists()
    sheet = json.loads((root / "metrics/datasheet.json").read_text())  # written on failure too, saying why
    assert not sheet["quality_gate"]["success"] and sheet["memorisation"]["kept_near_copies"] == 1
    assert "FAILED" in render(sheet)


def test_an_intra_edit_identical_to_its_own_source_is_disclosed_not_gated(world: Path, tmp_path: Path):
    """IntraAug keeps the patient by design: its own source film is left out of the search, and how many
    edits are as close to it as a near-copy would be is reported (metrics, datasheet) rather than gated."""
    root = tmp_path / "w"
    shutil.copytree(world, root)
    pruned = pd.read_parquet(root / "data/pruned/pairs.parquet")
    victim = pruned[pruned["branch"] == "intra"].iloc[0]
    real = pd.read_parquet(root / "data/prepared/pairs.parquet").set_index("pair_id")
    set_image(root, victim["pair_id"], copy_of=root / "data/prepared" / real.at[victim["source_pair_id"], "image"])
    table, metrics = check(root)
    row = table.set_index("pair_id").loc[victim["pair_id"]]
    assert row["source_pixel_distance"] < 1e-6 and not row["near_copy"]
    assert metrics["branches"]["intra"]["own_source_film"]["within_thresholds"] == 1


def test_the_gate_refuses_generated_pairs_the_check_never_saw(world: Path, tmp_path: Path):
    root = tmp_path / "w"
    shutil.copytree(world, root)
    with pytest.raises(QualityGateError, match=r"near_copy not null where branch != 'paraphrase'"):
        validate_pairs(ValidateConfig(data_docs=False, min_change_read=0.0), pruned=root / "data/pruned/pairs.parquet",
                       prepared=root / "data/prepared/pairs.parquet", out_dir=root / "data/validated",
                       metrics_path=None, gx_root=root, privacy=None, pool=root / "data/pool/pairs.parquet")


def test_the_datasheet_counts_whatever_review_prune_records():
    """Review decisions are prune's to record (a later `review*` column of its candidates): the datasheet
    counts them when there, 0 reviewed otherwise; reasons tally by kind, their numbers dropped."""
    cands = pd.DataFrame({"branch": ["inter", "inter", "inter", "intra"], "kept": [True, False, True, False],
                          "reason": ["kept", "s_a 0.41 <= tau 0.77", "kept", "rejected in review"],
                          "review_decision": [None, None, "accept", "reject"]})
    c = counts(cands, None)
    assert c["review_column"] == "review_decision"
    assert c["branches"]["inter"] == {"candidates": 3, "kept": 2, "reviewed": 1, "review_decisions": {"accept": 1},
                                      "reasons": {"kept": 2, "s_a <= tau": 1}, "validated": 0}
    assert c["branches"]["intra"]["reasons"] == {"rejected in review": 1} and c["branches"]["intra"]["reviewed"] == 1
    plain = counts(cands.drop(columns="review_decision"), None)
    assert plain["review_column"] is None and plain["branches"]["inter"]["reviewed"] == 0


def test_a_missing_manifest_is_named(world: Path, tmp_path: Path):
    root = tmp_path / "w"
    shutil.copytree(world, root)
    (root / "data/synthetic/intra/manifest.parquet").unlink()
    with pytest.raises(InputError, match=r"intra manifest not found \(run `dvc repro intra-generate`\)"):
        check_memorisation(PrivacyConfig(), load_scorer(root / "models/scorer"), sources(root))
