"""The training budget: one rule for every mix, passes over its pairs with a floor and a cap, so a mix (or a
target) with more pairs gets more updates."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel

from pairaug.errors import ParamError
from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.tokenizer import train_tokenizer
from pairaug.params import from_dict
from pairaug.train.contrastive import ContrastiveConfig, train_clip

WORDS = ["mild", "large", "left", "right", "effusion", "edema", "cardiomegaly", "no", "pneumothorax"]


def test_more_pairs_get_more_updates_up_to_the_cap():
    cfg = ContrastiveConfig(epochs=4, batch_size=32, min_steps=10, max_steps=60)
    assert cfg.budget(40) == 10  # ceil(4 * 40 / 32) = 5, below the floor
    assert cfg.budget(170) == 22  # ceil(4 * 170 / 32)
    assert cfg.budget(250) == 32
    assert cfg.budget(4000) == 60  # the cap
    sizes = [20, 100, 169, 250, 336, 500, 4233]
    steps = [cfg.budget(n) for n in sizes]
    assert steps == sorted(steps) and steps[2] < steps[3]  # pairaug's 250 pairs train longer than none's 169
    # A batch larger than the data is one step a pass.
    assert ContrastiveConfig(epochs=3, batch_size=128, min_steps=1).budget(50) == 3
    # Without epochs, the fixed `steps` (the scorer's fit uses it).
    assert ContrastiveConfig(steps=77, epochs=None).budget(10_000) == 77


@pytest.mark.parametrize(("data", "key"), [({"epochs": 0}, "train.epochs"), ({"min_steps": 0}, "train.min_steps"),
                                           ({"min_steps": 10, "max_steps": 5}, "train.max_steps")])
def test_a_bad_budget_names_the_key(data, key):
    with pytest.raises(ParamError) as e:
        from_dict(ContrastiveConfig, data, "train")
    assert key in str(e.value)


def _train(n_pairs: int, cfg: ContrastiveConfig):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_pairs, 16, 16), generator=gen, dtype=torch.uint8)
    texts = [" ".join(WORDS[j] for j in torch.randint(0, len(WORDS), (4,), generator=gen).tolist())
             for _ in range(n_pairs)]
    arch = ClipArch(projection_dim=8, text_hidden=8, text_mlp=16, text_layers=1, text_heads=2, max_positions=12,
                    vision_hidden=8, vision_mlp=16, vision_layers=1, vision_heads=2, patch_size=8, channels=1)
    tokenizer = train_tokenizer(texts, 60, 12)
    torch.manual_seed(0)
    model = CLIPModel(embedded_config(arch, len(tokenizer), 16))
    return train_clip(model, tokenizer, ImagePreprocessor(16, 1, (0.5,), (0.25,)), images, texts, cfg, seed=0,
                      select=lambda _m: 0.0)[1]


def test_training_runs_the_budget_of_its_pairs():
    """train_clip takes its step count from the pairs it is given: a mix twice the size trains twice as long."""
    cfg = ContrastiveConfig(epochs=2, batch_size=8, min_steps=1, max_steps=100, warmup_steps=1, select_every=1000)
    small, large = _train(16, cfg), _train(32, cfg)
    assert small.steps == [4] and large.steps == [8]  # evaluated once, at the end of the budget
