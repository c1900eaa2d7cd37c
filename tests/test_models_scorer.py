"""The report tokenizer, the CLIP text pooling, image preprocessing and the scorer interface (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPModel

from pairaug.io import save_png
from pairaug.models.clip import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ClipArch,
    ImagePreprocessor,
    embedded_config,
    load_clip,
)
from pairaug.models.scorer import ClipScorer, load_scorer
from pairaug.models.tokenizer import BOS_ID, EOS_ID, PAD_ID, save_tokenizer, train_tokenizer
from pairaug.train.scorer import alignment_gap

REPORTS = [
    "FINDINGS: Heart size is normal. No pleural effusion or pneumothorax. IMPRESSION: No acute process.",
    "FINDINGS: Moderate cardiomegaly. Small left pleural effusion. IMPRESSION: Cardiomegaly and effusion.",
    "FINDINGS: Patchy consolidation in the right lower lobe. IMPRESSION: Right lower lobe pneumonia.",
    "FINDINGS: Mild pulmonary edema. No focal consolidation. IMPRESSION: Mild edema.",
    "FINDINGS: Large right pneumothorax. IMPRESSION: Right pneumothorax, urgent.",
    "FINDINGS: Left basilar atelectasis. Heart size is normal. IMPRESSION: Atelectasis.",
    "No change.",
]
TINY_ARCH = ClipArch(projection_dim=16, text_hidden=32, text_mlp=64, text_layers=1, text_heads=2, max_positions=48,
                     vision_hidden=32, vision_mlp=64, vision_layers=1, vision_heads=2, patch_size=8, channels=1)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(REPORTS, vocab_size=200, max_length=TINY_ARCH.max_positions)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, tokenizer) -> Path:
    """An embedded-layout CLIP folder (model + tokenizer + preprocessor_config.json), randomly initialised."""
    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    model = CLIPModel(embedded_config(TINY_ARCH, len(tokenizer), 32))
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    ImagePreprocessor(32, 1, (0.4,), (0.2,)).save(folder)
    return folder


# ----------------------------------------------------------------------------------------- tokenizer

def test_tokenizer_round_trips_through_auto_tokenizer(tmp_path, tokenizer):
    save_tokenizer(tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded.eos_token_id == EOS_ID != 2  # 2 would switch CLIP to its legacy (argmax-id) pooling
    assert (loaded.bos_token_id, loaded.pad_token_id) == (BOS_ID, PAD_ID)
    for text in REPORTS:
        ids = loaded(text)["input_ids"]
        assert ids == tokenizer(text)["input_ids"]
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID and EOS_ID not in ids[1:-1]
    # Reports are lower-cased before the vocabulary sees them; known words do not fall back to [UNK].
    assert loaded("PLEURAL Effusion")["input_ids"] == loaded("pleural effusion")["input_ids"]
    assert loaded.unk_token_id not in loaded("moderate cardiomegaly")["input_ids"]
    # Truncation keeps the closing EOS (the text model pools there).
    long = loaded(" ".join(REPORTS * 5), truncation=True, max_length=20)["input_ids"]
    assert len(long) == 20 and long[-1] == EOS_ID


def test_tokenizer_training_is_deterministic(tmp_path):
    a = train_tokenizer(REPORTS, vocab_size=200)
    b = train_tokenizer(list(reversed(REPORTS)) + REPORTS[:2], vocab_size=200)  # order and repeats do not matter
    save_tokenizer(a, tmp_path / "a")
    save_tokenizer(b, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_clip_text_model_pools_at_the_eos_position(clip_folder):
    model, tok, _ = load_clip(clip_folder)
    assert model.config.text_config.eos_token_id == tok.eos_token_id == EOS_ID
    batch = tok(REPORTS, padding="max_length", truncation=True, max_length=TINY_ARCH.max_positions,
                return_tensors="pt")
    with torch.inference_mode():
        out = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    rows = torch.arange(len(REPORTS))
    eos_at = (batch["input_ids"] == EOS_ID).int().argmax(-1)
    assert torch.equal(out.pooler_output, out.last_hidden_state[rows, eos_at])
    # The legacy rule (position of the highest id) would pool a word, not the EOS: the check above can fail.
    legacy = out.last_hidden_state[rows, batch["input_ids"].argmax(-1)]
    assert not torch.allclose(out.pooler_output, legacy)


# ------------------------------------------------------------------------------------ preprocessing

def test_preprocessor_reads_three_channel_normalisation_from_the_folder(tmp_path):
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    vision = embedded_config(ClipArch(channels=3), 100, 16).vision_config
    pre = ImagePreprocessor.from_folder(tmp_path, vision)
    gray = np.full((2, 48, 48), 51, np.uint8)  # 0.2 after scaling; a constant survives bicubic resizing
    gray[1] = 204
    x = pre(gray)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(x[0, c], torch.full((16, 16), (0.2 - mean[c]) / std[c]), atol=1e-5)
        assert torch.allclose(x[1, c], torch.full((16, 16), (0.8 - mean[c]) / std[c]), atol=1e-5)


def test_preprocessor_defaults_and_channel_fitting(tmp_path):
    vision3 = embedded_config(ClipArch(channels=3), 100, 32).vision_config
    pre = ImagePreprocessor.from_folder(tmp_path, vision3)  # no preprocessor_config.json: OpenAI's constants
    assert pre.mean.flatten().tolist() == pytest.approx(OPENAI_CLIP_MEAN)
    assert pre.std.flatten().tolist() == pytest.approx(OPENAI_CLIP_STD)
    gray = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    x = pre(gray)
    # Gray is repeated to every channel before normalisation: undoing it gives the same image three times.
    raw = x * pre.std + pre.mean
    assert torch.allclose(raw[:, 0], torch.from_numpy(gray).float() / 255, atol=1e-5)
    assert torch.allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    # A one-channel tower with an RGB mean takes the mean of the three; a saved config reloads the same.
    vision1 = embedded_config(ClipArch(channels=1), 100, 32).vision_config
    pre1 = ImagePreprocessor.from_folder(tmp_path, vision1)
    assert pre1.mean.item() == pytest.approx(float(np.mean(OPENAI_CLIP_MEAN)))
    pre1.save(tmp_path)
    again = ImagePreprocessor.from_folder(tmp_path, vision1)
    assert torch.equal(again.mean, pre1.mean) and torch.equal(again.std, pre1.std)
    assert pre1(gray).shape == (3, 1, 32, 32)


# ------------------------------------------------------------------------------------------- scorer

def test_scorer_embeddings_are_normalised_and_read_the_image(clip_folder, tmp_path):
    scorer = load_scorer(clip_folder, batch_size=3)  # batches of 3: the last one is partial
    assert isinstance(scorer, ClipScorer)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 32, 32), dtype=np.uint8)
    img = scorer.encode_images(images)
    txt = scorer.encode_texts(REPORTS)
    assert img.shape == (7, 16) and txt.shape == (len(REPORTS), 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    # Batching does not change an embedding; paths and arrays give the same result.
    np.testing.assert_allclose(scorer.encode_images(images[4:5]), img[4:5], atol=1e-5)
    paths = []
    for i, im in enumerate(images):
        save_png(im, tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    np.testing.assert_allclose(scorer.encode_images(paths), img, atol=1e-5)
    assert not np.allclose(img[0], img[1])
    assert scorer.encode_texts([]).shape == (0, 16)


class FixedScorer:
    """A stand-in scorer with given embeddings (alignment_gap only needs the Scorer interface)."""

    def __init__(self, img: np.ndarray, txt: np.ndarray):
        self.img, self.txt = img, txt

    def encode_images(self, images):
        return self.img[np.asarray(images)]

    def encode_texts(self, texts):
        return self.txt[[int(t) for t in texts]]


def test_alignment_gap_on_fixed_embeddings():
    n = 40
    rng = np.random.default_rng(1)
    txt = F.normalize(torch.from_numpy(rng.normal(size=(n, 8))), dim=1).numpy()
    noise = F.normalize(torch.from_numpy(rng.normal(size=(n, 8))), dim=1).numpy()
    idx, texts = np.arange(n), [str(i) for i in range(n)]

    # Image embeddings close to their own report's: a clear positive gap, matching a hand computation.
    img = F.normalize(torch.from_numpy(txt + 0.3 * noise), dim=1).numpy()
    gap = alignment_gap(FixedScorer(img, txt), idx, texts, seed=3)
    perm = np.random.default_rng(3).permutation(n)
    matched, shuffled = (img * txt).sum(1).mean(), (img * txt[perm]).sum(1).mean()
    assert gap["matched_cos"] == pytest.approx(matched) and gap["shuffled_cos"] == pytest.approx(shuffled)
    assert gap["gap"] == pytest.approx(matched - shuffled) and gap["pairs"] == n
    assert gap["gap"] > 0.5
    assert alignment_gap(FixedScorer(img, txt), idx, texts, seed=3) == gap  # the shuffle is seeded

    # A scorer that ignores the image (one embedding for every image) cannot separate pairs: gap 0.
    blind = np.repeat(img[:1], n, axis=0)
    assert alignment_gap(FixedScorer(blind, txt), idx, texts, seed=3)["gap"] == pytest.approx(0.0, abs=1e-6)
    # Unrelated embeddings: the gap is small either way.
    assert abs(alignment_gap(FixedScorer(noise, txt), idx, texts, seed=3)["gap"]) < 0.2
