"""MedCLIP from local files only: the real architecture (Bio_ClinicalBERT + Swin-tiny + 512-d projections)
with random weights, offline, on CPU; a weights file that does not fit is refused naming the keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

from pairaug.data.phantom import iter_studies, render
from pairaug.errors import InputError
from pairaug.models.checkpoints import adopt_external
from pairaug.models.medclip import WEIGHTS, load_medclip, published_configs, save_random_medclip
from pairaug.models.scorer import MedClipScorer, load_scorer


def _tokenizer(tmp: Path) -> BertTokenizer:
    words = sorted({w.strip(".,").lower() for s in iter_studies(0, "train", 30) for w in s.report.split()})
    return BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])},
                         do_lower_case=True)


@pytest.fixture(scope="module")
def medclip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("medclip")
    text, vision = published_configs()
    return save_random_medclip(folder, text, vision, _tokenizer(folder))


def test_encodes_films_and_reports_to_unit_512d_vectors_offline_on_cpu(medclip_folder):
    studies = list(iter_studies(1, "train", 4))[:4]
    films = np.stack([render(s, 64) for s in studies])
    scorer = MedClipScorer(medclip_folder, batch_size=3)
    img, txt = scorer.encode_images(films), scorer.encode_texts([s.report for s in studies])
    assert img.shape == (4, 512) and txt.shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert next(scorer.model.parameters()).device.type == "cpu"
    # the weights in the file are the weights in use (strict load, not a fresh random init)
    state = torch.load(medclip_folder / WEIGHTS, weights_only=True)
    key = "vision_model.projection_head.weight"
    assert torch.equal(scorer.model.state_dict()[key], state[key])
    assert sum(p.numel() for p in scorer.model.text_model.model.parameters()) > 100e6  # BERT-base
    assert scorer.model.vision_model.model.config.hidden_size == 768  # Swin-tiny


def test_loads_through_the_scorer_pointer_in_a_process_with_the_hub_off(medclip_folder, tmp_path):
    """A fresh interpreter with HF_HUB_OFFLINE=1 and no network: the pointer models/scorer resolves to
    the folder and MedCLIP scores from it."""
    adopt_external(tmp_path / "scorer", medclip_folder, "medclip")
    code = ("import numpy as np; from pairaug.models.scorer import load_scorer; "
            f"s = load_scorer({str(tmp_path / 'scorer')!r}); "
            "print(type(s).__name__, s.encode_texts(['no pleural effusion']).shape, "
            "s.encode_images(np.zeros((1, 32, 32), np.uint8)).shape)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["MedClipScorer", "(1,", "512)", "(1,", "512)"]
    assert isinstance(load_scorer(tmp_path / "scorer", device="cpu"), MedClipScorer)


def _copy(medclip_folder: Path, dest: Path) -> tuple[Path, dict]:
    """A folder sharing the towers' files, with its own copy of the weights to change."""
    dest.mkdir()
    for name in ("text", "vision"):
        (dest / name).symlink_to(medclip_folder / name)
    return dest, torch.load(medclip_folder / WEIGHTS, weights_only=True)


def test_the_benign_position_ids_key_is_dropped(medclip_folder, tmp_path):
    folder, state = _copy(medclip_folder, tmp_path / "m")
    state["text_model.model.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)  # as transformers < 4.31 saved
    torch.save(state, folder / WEIGHTS)
    model, _ = load_medclip(folder)
    assert torch.equal(model.state_dict()["logit_scale"], state["logit_scale"])


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("vision_model.projection_head.weight"), r"missing 1: vision_model\.projection_head\.weight"),
    (lambda s: s.__setitem__("text_model.extra.weight", torch.zeros(2)), r"unexpected 1: text_model\.extra\.weight"),
    (lambda s: s.__setitem__("text_model.projection_head.weight", torch.zeros(256, 768)),
     r"wrong shape 1: text_model\.projection_head\.weight"),
])
def test_a_weights_file_that_does_not_fit_is_refused_naming_the_key(medclip_folder, tmp_path, change, named):
    folder, state = _copy(medclip_folder, tmp_path / "m")
    change(state)
    torch.save(state, folder / WEIGHTS)
    with pytest.raises(InputError, match=named) as err:
        load_medclip(folder)
    assert "\n" not in str(err.value) and WEIGHTS in str(err.value)


def test_a_folder_without_its_tower_configs_names_what_is_missing(medclip_folder, tmp_path):
    folder, state = _copy(medclip_folder, tmp_path / "m")
    torch.save(state, folder / WEIGHTS)
    (folder / "vision").unlink()
    with pytest.raises(InputError, match=r"MedCLIP folder lacks vision/config\.json.*never downloads"):
        load_medclip(folder)
