"""The benchmark's design (issue K): the public pool is another population, the count-matched
`real_dup` control, and the controls' manifests as `validate` writes them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pairaug.data.mixes import default_mixes, pool_real_pairs, read_mixes, real_dup_pairs
from pairaug.data.prepare import DataConfig, PhantomConfig, pool_config, prepare
from pairaug.errors import ParamError
from pairaug.hashing import file_digest


def test_the_pools_patients_never_appear_in_the_target(tmp_path: Path):
    target_cfg = DataConfig(phantom=PhantomConfig(train_patients=12, valid_patients=4, test_patients=6), workers=1)
    pool_cfg = pool_config({"pool": {"phantom": {"train_patients": 30, "valid_patients": 4}, "workers": 1}})
    target = prepare(target_cfg, 0, tmp_path / "prepared")
    pool = prepare(pool_cfg, 0, tmp_path / "pool")
    assert set(pool["split"]) == {"train", "valid"} and len(pool) > len(target) / 2
    assert not set(pool["patient_id"]) & set(target["patient_id"])
    assert not set(pool["pair_id"]) & set(target["pair_id"])
    shas = lambda df, root: {file_digest(root / rel) for rel in df["image"]}  # noqa: E731
    assert not shas(pool, tmp_path / "pool") & shas(target, tmp_path / "prepared")  # no film in common
    # the target is the same whatever the pool: its bytes do not depend on the pool's size
    again = prepare(target_cfg, 0, tmp_path / "prepared-again")
    assert (tmp_path / "prepared/pairs.parquet").read_bytes() == (tmp_path / "prepared-again/pairs.parquet").read_bytes()
    assert again["pair_id"].tolist() == target["pair_id"].tolist()


def test_the_pool_takes_the_targets_image_size_and_another_population():
    cfg = pool_config({"data": {"image_size": 48}})
    assert cfg.image_size == 48 and cfg.phantom.population == "pool" and cfg.phantom.train_patients == 2500
    with pytest.raises(ParamError, match=r"pool\.phantom\.population"):
        pool_config({"pool": {"phantom": {"population": "target"}}})
    with pytest.raises(ParamError, match=r"pool\.image_size"):
        pool_config({"pool": {"image_size": 64}})


@pytest.mark.parametrize("count", [0, 5, 7, 20, 23])
def test_real_dup_has_exactly_the_count_and_repeats_evenly(count: int):
    real = pd.DataFrame({"pair_id": [f"r{i}" for i in range(7)], "report": [f"report {i}" for i in range(7)],
                         "image": [f"images/{i}.png" for i in range(7)]})
    rows = real_dup_pairs(real, count)
    assert len(rows) == count and rows["pair_id"].is_unique and (rows["branch"] == "real_dup").all()
    repeats = Counter(rows["source_pair_id"])
    if count:
        assert set(repeats) <= set(real["pair_id"])
        assert max(repeats.values()) - min(repeats.get(p, 0) for p in real["pair_id"]) <= 1
    by_id = real.set_index("pair_id")
    assert (rows["report"].to_numpy() == by_id.loc[rows["source_pair_id"], "report"].to_numpy()).all()
    assert rows.equals(real_dup_pairs(real, count))  # deterministic


def test_pool_real_is_the_pools_pairs():
    pool = pd.DataFrame({"pair_id": ["a", "b"], "report": ["x", "y"], "image": ["images/a.png", "images/b.png"]})
    rows = pool_real_pairs(pool)
    assert rows["pair_id"].tolist() == ["a", "b"] and (rows["branch"] == "pool_real").all()


def test_the_default_mixes_hold_the_controls_and_real_dup_needs_pairaug():
    mixes = read_mixes({})
    assert mixes == default_mixes() and mixes["real_dup"] == ["real_dup"] and mixes["pool_real"] == ["pool_real"]
    with pytest.raises(ParamError, match="real_dup"):
        read_mixes({"pretrain": {"mixes": {"none": [], "real_dup": ["real_dup"]}}})


@pytest.mark.slow
def test_controls_in_the_tiny_pipeline(tiny_repo: Path):
    """real_dup holds exactly as many real train pairs as pairaug holds synthetic ones; pool_real holds the
    pool's train pairs; no pool patient is a target patient; every mix trained on its manifest."""
    mixes = tiny_repo / "data/validated/mixes"
    pairaug, real_dup = pd.read_parquet(mixes / "pairaug.parquet"), pd.read_parquet(mixes / "real_dup.parquet")
    target = pd.read_parquet(tiny_repo / "data/prepared/pairs.parquet")
    pool = pd.read_parquet(tiny_repo / "data/pool/pairs.parquet")
    assert len(real_dup) == len(pairaug) > 0
    train = target[target["split"] == "train"].set_index("pair_id")
    assert set(real_dup["source_pair_id"]) <= set(train.index)
    for rel, src in zip(real_dup["image"], real_dup["source_pair_id"]):
        assert (mixes.parent / rel).resolve() == (tiny_repo / "data/prepared" / train.at[src, "image"]).resolve()
    pool_real = pd.read_parquet(mixes / "pool_real.parquet")
    assert sorted(pool_real["pair_id"]) == sorted(pool.loc[pool["split"] == "train", "pair_id"])
    assert not set(pool["patient_id"]) & set(target["patient_id"])
    for mix, expected in (("real_dup", len(real_dup)), ("pool_real", len(pool_real))):
        used = pd.read_parquet(tiny_repo / f"models/vlp/{mix}/training_pairs.parquet")
        assert int((used["branch"] == mix).sum()) == expected
        assert int((used["branch"] == "real").sum()) == len(train)
