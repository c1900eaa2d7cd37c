"""External checkpoints: a genuine (tiny, random) Stable Diffusion folder and a CLIP folder run through the
real stage scripts; missing or hub-style checkpoint paths fail with a clear error and no download."""

from __future__ import annotations

import json
import runpy
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_PARAMS, copy_repo, deep_merge
from diffusers import UNet2DConditionModel
from tiny_sd import save_tiny_sd
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

from pairaug.data.images import load_gray
from pairaug.data.schema import empty_labels, pairs_frame
from pairaug.errors import InputError
from pairaug.generate.common import MANIFEST_COLUMNS
from pairaug.hashing import file_digest
from pairaug.models.checkpoints import MARKER, fingerprint
from pairaug.models.generator import load_generator
from pairaug.models.scorer import ClipScorer, load_scorer
from pairaug.train.generator import GeneratorConfig, fit_generator
from pairaug.train.scorer import ScorerConfig, fit_scorer


def tiny_clip_tokenizer(max_length: int = 32) -> CLIPTokenizer:
    """A real CLIP BPE tokenizer over the 256 byte symbols plus a few merges (OpenAI's has 49,408 tokens)."""
    chars = sorted(ByteLevel.alphabet())
    merges = [("e", "f"), ("p", "l"), ("c", "a"), ("r", "d"), ("i", "o"), ("n</w>", ".</w>")]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    tok.model_max_length = max_length
    return tok


def text_config(tok: CLIPTokenizer, **kw) -> dict:
    return dict(vocab_size=len(tok), max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kw)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    """A Stable Diffusion v1-layout folder saved by diffusers' own pipeline: 4-channel latent UNet, a VAE with
    a 4× downscale, CLIP text encoder and tokenizer, PNDM scheduler, no safety checker."""
    torch.manual_seed(0)
    tok = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(tok, hidden_size=32, intermediate_size=64,
                                                              num_hidden_layers=1, num_attention_heads=2)))
    return save_tiny_sd(tmp_path_factory.mktemp("ext") / "tiny-sd", tok, text_encoder, vae_channels=(8, 8, 16),
                        image_size=64)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """An OpenAI-CLIP-layout folder: CLIPModel with a 3-channel 32 px vision tower, CLIP tokenizer and a
    CLIPImageProcessor config with per-channel mean/std."""
    torch.manual_seed(0)
    tok = tiny_clip_tokenizer()
    config = CLIPConfig(text_config=text_config(tok, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                num_attention_heads=2),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8, num_channels=3),
                        projection_dim=16)
    folder = tmp_path_factory.mktemp("ext") / "tiny-clip"
    CLIPModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.2, 0.5, 0.7], image_std=[0.25, 0.3, 0.35]).save_pretrained(folder)
    return folder


def repo_with_inputs(dest: Path, source: Path, params: dict, *paths: str) -> Path:
    """A repository copy on `params` holding `paths` (upstream outputs) copied from the tiny pipeline's run."""
    repo = copy_repo(dest, deep_merge(TINY_PARAMS, params))
    for rel in paths:
        shutil.copytree(source / rel, repo / rel)
    return repo


def run_stage_script(repo: Path, script: str, *args: str, monkeypatch) -> None:
    """Run stages/<script> in this process (as `dvc repro` would, without paying the imports again)."""
    with monkeypatch.context() as m:
        m.chdir(repo)
        m.setattr(sys, "argv", [script, *args])
        runpy.run_path(str(repo / "stages" / script), run_name="__main__")


@pytest.mark.slow  # uses the tiny pipeline's outputs as inputs
def test_stable_diffusion_folder_runs_inter_generate(tmp_path, tiny_repo, sd_folder, monkeypatch):
    repo = repo_with_inputs(tmp_path / "repo", tiny_repo,
                            {"generator": {"checkpoint": str(sd_folder), "check": {"reports": 8}},
                             "generate": {"resolution": 64}},
                            "data/prepared", "data/pool", "data/rewritten", "models/scorer")
    inter = repo / "data/rewritten/inter.parquet"
    pd.read_parquet(inter).iloc[:20].to_parquet(inter)  # 20 reports are enough here: chunks of 8, 8 and 4

    run_stage_script(repo, "fit_generator.py", monkeypatch=monkeypatch)
    # Adopted, not trained or copied: the output is a pointer with the checkpoint's fingerprint.
    assert sorted(p.name for p in (repo / "models/generator").iterdir()) == [MARKER]
    info = json.loads((repo / "models/generator" / MARKER).read_text())
    assert info == {"path": str(sd_folder.resolve()), "kind": "diffusers", "fingerprint": fingerprint(sd_folder)}
    metrics = json.loads((repo / "metrics/generator.json").read_text())
    assert metrics["external"] == str(sd_folder)
    run_stage_script(repo, "check_priors.py", monkeypatch=monkeypatch)  # the check runs on the checkpoint
    check = json.loads((repo / "metrics/priors.json").read_text())["generator"]
    assert check["reports"] == 8
    assert set(check["generated_auc"]) == set(check["real_auc"])

    unet_inputs, vae_decodes = [], []

    def spy(module, args):  # a global forward pre-hook: what did the UNet and the VAE decoder see?
        if isinstance(module, UNet2DConditionModel):
            unet_inputs.append(tuple(args[0].shape))
        elif type(module).__name__ == "Decoder":
            vae_decodes.append(tuple(args[0].shape))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(spy)
    try:
        run_stage_script(repo, "generate.py", "inter", monkeypatch=monkeypatch)
    finally:
        handle.remove()

    # 64 px through a 4× VAE: the UNet denoises 4-channel 16×16 latents (batch doubled for guidance).
    batch = TINY_PARAMS["generate"]["batch_size"]
    assert unet_inputs and all(s[1:] == (4, 16, 16) for s in unet_inputs)
    assert max(s[0] for s in unet_inputs) == 2 * batch
    assert vae_decodes and all(s[1:] == (4, 16, 16) for s in vae_decodes)

    manifest = pd.read_parquet(repo / "data/synthetic/inter/manifest.parquet")
    rewritten = pd.read_parquet(repo / "data/rewritten/inter.parquet")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert sorted(manifest["source_pair_id"]) == sorted(rewritten.loc[rewritten["status"] == "ok", "source_pair_id"])
    assert (manifest["generator_sha"] == info["fingerprint"][:16]).all()
    for rel, sha in zip(manifest["image"], manifest["image_sha256"]):
        path = repo / "data/synthetic/inter" / rel
        assert file_digest(path) == sha
        assert load_gray(path).shape == (32, 32)  # stored at data.image_size, not the 64 px it was made at


@pytest.mark.slow  # uses the tiny pipeline's outputs as inputs
def test_clip_folder_is_adopted_as_the_scorer(tmp_path, tiny_repo, clip_folder, monkeypatch):
    repo = repo_with_inputs(tmp_path / "repo", tiny_repo, {"scorer": {"checkpoint": str(clip_folder)}},
                            "data/prepared", "data/pool")
    run_stage_script(repo, "fit_scorer.py", monkeypatch=monkeypatch)

    assert sorted(p.name for p in (repo / "models/scorer").iterdir()) == [MARKER]  # nothing trained
    metrics = json.loads((repo / "metrics/scorer.json").read_text())
    assert "history" not in metrics and metrics["external"]["path"] == str(clip_folder.resolve())
    pairs = pd.read_parquet(repo / "data/prepared/pairs.parquet")
    test = pairs[pairs["split"] == "test"]

    scorer = load_scorer(repo / "models/scorer")
    assert isinstance(scorer, ClipScorer)
    paths = [repo / "data/prepared" / rel for rel in test["image"].iloc[:5]]
    gray = np.stack([load_gray(p) for p in paths])
    img, txt = scorer.encode_images(paths), scorer.encode_texts(test["report"].iloc[:5].tolist())
    assert img.shape == (5, 16) and txt.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)

    # Gray films reach the 3-channel tower as three copies, each normalised with the folder's mean/std.
    pixels = scorer.preprocess(gray)
    assert pixels.shape == (5, 3, 32, 32)
    mean, std = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.25, 0.3, 0.35])
    expected = (torch.from_numpy(gray).float()[:, None] / 255 - mean[None, :, None, None]) / std[None, :, None, None]
    torch.testing.assert_close(pixels, expected)
    model = CLIPModel.from_pretrained(clip_folder).eval()
    with torch.inference_mode():
        feats = model.get_image_features(pixel_values=expected)
    feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
    np.testing.assert_allclose(img, torch.nn.functional.normalize(feats, dim=-1).numpy(), atol=1e-5)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (the checks below must happen before any download)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def pairs_path(tmp_path) -> Path:
    rows = [{"pair_id": f"p{i}", "patient_id": f"pt{i}", "study_id": f"s{i}", "split": split, "image": f"images/{i}.png",
             "report": "No acute process.", "view": "PA", **empty_labels(), "label_source": "labeler"}
            for i, split in enumerate(["train", "valid", "test"])]
    path = tmp_path / "prepared" / "pairs.parquet"
    path.parent.mkdir()
    pairs_frame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("checkpoint", ["openai/clip-vit-base-patch32", "/nonexistent/medclip-vit"])
def test_scorer_checkpoint_must_be_a_local_folder(tmp_path, pairs_path, no_network, checkpoint):
    for kind in ("clip", "medclip"):
        with pytest.raises(InputError, match="never downloads") as err:
            fit_scorer(ScorerConfig(checkpoint=checkpoint, kind=kind), 0, pairs_path, tmp_path / "scorer")
        assert checkpoint in str(err.value) and "scorer.checkpoint" in str(err.value)
    assert not (tmp_path / "scorer").exists()  # nothing adopted


@pytest.mark.parametrize("checkpoint", ["stanfordmimi/RoentGen", "/nonexistent/roentgen"])
def test_generator_checkpoint_must_be_a_local_folder(tmp_path, pairs_path, no_network, checkpoint):
    with pytest.raises(InputError, match="never downloads") as err:
        fit_generator(GeneratorConfig(checkpoint=checkpoint), 0, pairs_path, tmp_path / "scorer", tmp_path / "gen")
    assert checkpoint in str(err.value) and "generator.checkpoint" in str(err.value)
    assert not (tmp_path / "gen").exists()
    # A pointer whose checkpoint has since gone away fails the same way when loaded.
    with pytest.raises(InputError, match="generator checkpoint"):
        load_generator(tmp_path / "gone")


def test_stage_reports_a_missing_checkpoint_in_one_line(tmp_path, pairs_path, monkeypatch, capsys):
    repo = tmp_path / "stage"
    (repo / "stages").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "stages/fit_generator.py", repo / "stages")
    (repo / "params.yaml").write_text("seed: 0\ngenerator:\n  checkpoint: /nonexistent/roentgen\n")
    shutil.copytree(pairs_path.parent, repo / "data/prepared")
    with pytest.raises(SystemExit) as exit_:
        run_stage_script(repo, "fit_generator.py", monkeypatch=monkeypatch)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: generator.checkpoint: no local model folder") and "/nonexistent/roentgen" in err[-1]
