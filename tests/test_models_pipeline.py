"""What the tiny `dvc repro` (conftest's tiny_repo) left for the model and generation stages: models that
load through the real loaders, synthetic manifests that follow the contract, metrics with their keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_PARAMS, run
from transformers import CLIPModel

from pairaug.data.images import load_gray
from pairaug.generate.common import MANIFEST_COLUMNS, generator_sha, plan
from pairaug.generate.config import SamplingConfig
from pairaug.hashing import file_digest, seed_from
from pairaug.measurement.pixel_probe import CHECK_LABELS
from pairaug.models.clip import features
from pairaug.models.generator import load_generator
from pairaug.models.scorer import ClipScorer, load_scorer
from pairaug.models.tokenizer import EOS_ID
from pairaug.params import from_dict, section
from pairaug.train.generator import GeneratorCheck, probe_check

pytestmark = pytest.mark.slow

STAGES = ("fit-scorer", "fit-generator", "inter-generate", "image-only-generate")


def test_model_stages_are_up_to_date_after_repro(tiny_repo: Path):
    state = tiny_repo.parent / "dvc-state-models"
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(state / "site"),
           "DVC_GLOBAL_CONFIG_DIR": str(state / "global"), "DVC_SYSTEM_CONFIG_DIR": str(state / "system")}
    out = run(["dvc", "status", *STAGES], tiny_repo, env=env).stdout
    assert "up to date" in out, out
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())["stages"]
    assert set(STAGES) <= set(lock)
    assert set(lock["inter-generate"]["params"]["params.yaml"]) == {"seed", "replicates", "generate", "launch"}


def test_models_load_through_the_real_loaders(tiny_repo: Path):
    pairs = pd.read_parquet(tiny_repo / "data/prepared/pairs.parquet")
    test = pairs[pairs["split"] == "test"].iloc[:6]
    scorer = load_scorer(tiny_repo / "models/scorer")
    assert isinstance(scorer, ClipScorer)
    assert scorer.tokenizer.eos_token_id == scorer.model.config.text_config.eos_token_id == EOS_ID
    img = scorer.encode_images([tiny_repo / "data/prepared" / rel for rel in test["image"]])
    txt = scorer.encode_texts(test["report"].tolist())
    dim = scorer.model.config.projection_dim
    assert img.shape == (6, dim) and txt.shape == (6, dim)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)

    pipe = load_generator(tiny_repo / "models/generator")
    assert pipe.vae is None and pipe.unet.config.in_channels == 1  # the embedded pixel-space UNet
    images = pipe(test["report"].iloc[:2].tolist(), [1, 2], num_inference_steps=2, guidance_scale=3.5)
    assert images.shape == (2, 32, 32) and images.dtype == np.uint8
    # The generator is conditioned on the scorer's (frozen) text tower, with the scorer's tokenizer.
    clip = CLIPModel.from_pretrained(tiny_repo / "models/scorer")
    theirs = {k.removeprefix("text_model."): v for k, v in clip.state_dict().items() if k.startswith("text_model.")}
    ours = {k.removeprefix("text_model."): v for k, v in pipe.text_encoder.state_dict().items()}
    assert ours.keys() == theirs.keys()
    for name, weight in ours.items():
        assert torch.equal(weight, theirs[name]), name
    assert pipe.tokenizer("mild edema")["input_ids"] == scorer.tokenizer("mild edema")["input_ids"]


@pytest.mark.parametrize("branch", ["inter", "image_only"])
def test_synthetic_manifests_follow_the_contract(tiny_repo: Path, branch: str):
    folder = tiny_repo / "data/synthetic" / branch
    manifest = pd.read_parquet(folder / "manifest.parquet")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    pairs = pd.read_parquet(tiny_repo / "data/prepared/pairs.parquet")
    if branch == "inter":
        rewritten = pd.read_parquet(tiny_repo / "data/rewritten/inter.parquet")
        sources = rewritten.loc[rewritten["status"] == "ok", ["source_pair_id", "report_new"]]
        sources = sources.rename(columns={"report_new": "report"})
    else:
        sources = pairs.loc[pairs["split"] == "train", ["pair_id", "report"]].rename(columns={"pair_id": "source_pair_id"})
    # One row per ok rewrite / train pair, carrying its report.
    assert len(manifest) == len(sources) > 0
    assert dict(zip(manifest["source_pair_id"], manifest["report"])) == dict(zip(sources["source_pair_id"],
                                                                                 sources["report"]))
    # Ids and seeds are a pure function of the inputs: recomputing them from params gives the same.
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    cfg = section(SamplingConfig, params, "generate")
    gen_sha = generator_sha(tiny_repo / "models/generator")
    expected = plan(branch, sources.reset_index(drop=True), params["seed"], gen_sha, cfg)
    got = manifest.set_index("source_pair_id")
    assert list(got.loc[expected["source_pair_id"], "pair_id"]) == list(expected["pair_id"])
    assert list(manifest["seed"]) == [seed_from("noise", pid) for pid in manifest["pair_id"]]
    assert list(manifest["pair_id"]) == sorted(manifest["pair_id"]) and manifest["pair_id"].is_unique
    assert (manifest["branch"] == branch).all() and (manifest["generator_sha"] == gen_sha).all()
    assert (manifest["steps"] == TINY_PARAMS["generate"]["steps"]).all()
    assert (manifest["guidance"] == cfg.guidance).all() and not manifest["inversion"].any()
    # Images: exactly the manifest's, at data.image_size, with matching hashes.
    files = {str(p.relative_to(folder)) for p in folder.rglob("*.png")}
    assert files == set(manifest["image"])
    for rel, sha in zip(manifest["image"], manifest["image_sha256"]):
        assert file_digest(folder / rel) == sha
        assert load_gray(folder / rel).shape == (32, 32)
    assert not list((tiny_repo / "data/.work").glob(f"{branch}-*"))  # work folders cleaned up


def test_model_metrics_are_what_the_saved_models_give(tiny_repo: Path):
    """metrics/priors.json (check-priors) measures the saved models on the target's valid split, and
    metrics/{scorer,generator}.json describe them: recomputed here from the model folders (the scorer's
    cosines through transformers' own calls)."""
    pairs = pd.read_parquet(tiny_repo / "data/prepared/pairs.parquet")
    root = tiny_repo / "data/prepared"
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    seed = params["seed"]
    test = pairs[pairs["split"] == "valid"]  # the scorer's check reads the valid split (test: evaluate only)
    scorer = json.loads((tiny_repo / "metrics/scorer.json").read_text())
    priors = json.loads((tiny_repo / "metrics/priors.json").read_text())
    gap = priors["scorer"]
    assert gap["split"] == "valid"
    clip = CLIPModel.from_pretrained(tiny_repo / "models/scorer").eval()
    s = load_scorer(tiny_repo / "models/scorer")
    with torch.inference_mode():
        pixels = s.preprocess(np.stack([load_gray(root / rel) for rel in test["image"]]))
        img = torch.nn.functional.normalize(features(clip.get_image_features(pixel_values=pixels)), dim=-1)
        tok = s.tokenizer(test["report"].tolist(), padding="max_length", truncation=True, max_length=s.max_length,
                          return_tensors="pt")
        txt = torch.nn.functional.normalize(features(clip.get_text_features(**tok)), dim=-1)
    perm = np.random.default_rng(seed).permutation(len(test))
    assert gap["pairs"] == len(test)
    assert gap["matched_cos"] == pytest.approx(float((img * txt).sum(1).mean()), abs=1e-5)
    assert gap["shuffled_cos"] == pytest.approx(float((img * txt[perm]).sum(1).mean()), abs=1e-5)
    assert gap["gap"] == pytest.approx(gap["matched_cos"] - gap["shuffled_cos"], abs=1e-9)
    assert scorer["params"] == sum(p.numel() for p in clip.parameters())

    generator = json.loads((tiny_repo / "metrics/generator.json").read_text())
    pipe = load_generator(tiny_repo / "models/generator")
    assert generator["params"] == sum(p.numel() for p in pipe.unet.parameters())
    assert generator["train_steps"] == TINY_PARAMS["generator"]["train"]["steps"]
    check_cfg = from_dict(GeneratorCheck, params["generator"]["check"], "generator.check")
    pool = pd.read_parquet(tiny_repo / "data/pool/pairs.parquet")
    again = {"split": "valid", **probe_check(pipe, pool, tiny_repo / "data/pool", pairs[pairs["split"] == "valid"],
                                             root, check_cfg, seed)}
    assert _close(again, priors["generator"]), (again, priors["generator"])
    assert generator["train_pairs"] == int((pool["split"] == "train").sum())  # trained on the public pool
    assert set(priors["generator"]["checked_labels"]) <= set(CHECK_LABELS) and priors["generator"]["checked_labels"]


def test_a_new_target_reuses_the_fitted_priors(tiny_repo: Path, tmp_path: Path):
    """The fits read only the pool: another target size (a scarcity-curve point) reruns prepare and the
    checks, never fit-scorer or fit-generator, and their models stay byte-identical."""
    repo = Path(shutil.copytree(tiny_repo, tmp_path / "repo", symlinks=True))
    before = {m: _tree_bytes(repo / "models" / m) for m in ("scorer", "generator")}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["phantom"]["train_patients"] += 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "check-priors"], repo).stdout
    assert "Running stage 'prepare'" in out and "Running stage 'check-priors'" in out, out
    assert "Running stage 'fit-scorer'" not in out and "Running stage 'fit-generator'" not in out, out
    assert {m: _tree_bytes(repo / "models" / m) for m in ("scorer", "generator")} == before


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _close(a, b) -> bool:
    """Nested JSON values equal, floats to 1e-9."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-9
    return a == b
