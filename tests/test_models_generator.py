"""The text-to-image pipeline's pieces on a tiny model, and the pixel-probe check that tells a text-conditioned
generator from one that ignores its prompt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from pairaug.data.images import load_gray
from pairaug.data.prepare import DataConfig, PhantomConfig, prepare
from pairaug.measurement.images import resize_batch
from pairaug.measurement.pixel_probe import CHECK_LABELS
from pairaug.models.generator import (
    TextToImagePipeline,
    UNetArch,
    embedded_unet,
    load_generator,
    train_scheduler,
)
from pairaug.models.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from pairaug.train.generator import GeneratorCheck, probe_check

PROMPTS = ["Moderate cardiomegaly.", "Small left pleural effusion.", "No acute process.", "Mild pulmonary edema."]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> TextToImagePipeline:
    """A tiny embedded-layout generator, saved and loaded back through `load_generator`."""
    torch.manual_seed(0)
    tok = train_tokenizer(PROMPTS * 3, vocab_size=100, max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, pad_token_id=PAD_ID,
                                        bos_token_id=BOS_ID, eos_token_id=EOS_ID))
    unet = embedded_unet(UNetArch(block_out_channels=(8, 16), attention_head_dim=4, cross_attention_levels=(1,)), 16, 16)
    folder = tmp_path_factory.mktemp("gen") / "generator"
    TextToImagePipeline(unet=unet, scheduler=train_scheduler(), text_encoder=text, tokenizer=tok).save_pretrained(folder)
    return load_generator(folder)


def test_embedded_unet_cross_attends_only_at_the_chosen_levels():
    unet = embedded_unet(UNetArch(block_out_channels=(8, 16, 16), attention_head_dim=4, cross_attention_levels=(2,)),
                         32, 24)
    assert unet.config.down_block_types == ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D")
    assert unet.config.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D")  # mirrored
    assert (unet.config.in_channels, unet.config.sample_size, unet.config.cross_attention_dim) == (1, 32, 24)


def test_noise_is_per_seed_and_independent_of_the_batch(pipe):
    both = pipe.initial_noise([7, 8], 16)
    assert both.shape == (2, 1, 16, 16)
    assert torch.equal(both[1:], pipe.initial_noise([8], 16)) and not torch.equal(both[0], both[1])


def test_pixel_space_encode_decode_round_trip(pipe):
    gray = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    x = pipe.encode_image(gray)
    assert x.shape == (3, 1, 16, 16) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(pipe.decode(x), gray)


def test_generation_is_seeded_and_guided(pipe):
    kw = dict(num_inference_steps=3, guidance_scale=3.0)
    a = pipe(PROMPTS, [1, 2, 3, 4], **kw)
    assert a.shape == (4, 16, 16) and a.dtype == np.uint8
    assert np.array_equal(a, pipe(PROMPTS, [1, 2, 3, 4], **kw))
    assert not np.array_equal(a[0], pipe(PROMPTS[:1], [5], **kw)[0])  # another seed, another image
    assert not np.array_equal(a, pipe(PROMPTS, [1, 2, 3, 4], num_inference_steps=3, guidance_scale=1.0))
    # guidance_scale 1 is the conditional prediction alone (one UNet pass, no empty prompt).
    latents = pipe.initial_noise([1, 2], 16)
    cond, uncond = pipe.encode_prompt(PROMPTS[:2]), pipe.encode_prompt(["", ""])
    t = torch.tensor(500)
    with torch.inference_mode():
        plain = pipe.unet(latents, t, encoder_hidden_states=cond).sample
        torch.testing.assert_close(pipe.guided_eps(latents, t, cond, uncond, 1.0), plain)
        eps_u = pipe.unet(latents, t, encoder_hidden_states=uncond).sample
        torch.testing.assert_close(pipe.guided_eps(latents, t, cond, uncond, 3.0), eps_u + 3.0 * (plain - eps_u),
                                   atol=1e-5, rtol=1e-4)


def test_resize_batch_returns_the_stored_size():
    big = np.kron(np.arange(4, dtype=np.uint8).reshape(1, 2, 2) * 60, np.ones((1, 32, 32), np.uint8))
    small = resize_batch(big, 16)
    assert small.shape == (1, 16, 16) and small.dtype == np.uint8 and small[0, 0, 0] == 0 and small[0, -1, -1] == 180
    assert resize_batch(small, 16) is small


# ------------------------------------------------------------------------------------- probe check

@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A small phantom dataset (32 px) with its labels: the probe's real training images and test reports."""
    out = tmp_path_factory.mktemp("phantom") / "prepared"
    cfg = DataConfig(phantom=PhantomConfig(train_patients=60, valid_patients=10, test_patients=60), workers=1)
    pairs = prepare(cfg, 0, out)
    return pairs, out


class RealFilms:
    """A stand-in 'generator' that returns each report's own real film: perfectly text-conditioned."""

    def __init__(self, pairs: pd.DataFrame, root):
        self.films = {r: load_gray(root / rel) for r, rel in zip(pairs["report"], pairs["image"])}

    def __call__(self, prompts, seeds, **kwargs):
        return np.stack([self.films[p] for p in prompts])


class IgnoresPrompt(RealFilms):
    """Realistic films that ignore the prompt: the seed alone picks one (an unconditioned generator)."""

    def __call__(self, prompts, seeds, **kwargs):
        films = list(self.films.values())
        return np.stack([films[s % len(films)] for s in seeds])


def test_probe_check_tells_a_conditioned_generator_from_an_unconditioned_one(phantom):
    pairs, root = phantom
    check = GeneratorCheck(reports=300, steps=1, guidance=1.0)
    real, test = pairs[pairs["split"] != "test"], pairs[pairs["split"] == "test"]
    good = probe_check(RealFilms(pairs, root), real, root, test, root, check, seed=0)
    blind = probe_check(IgnoresPrompt(pairs, root), real, root, test, root, check, seed=0)

    assert good["reports"] == blind["reports"] == len(test)
    assert good["checked_labels"] == blind["checked_labels"] and set(good["checked_labels"]) <= set(CHECK_LABELS)
    assert good["generated_auc"] == good["real_auc"]  # the films are the real ones
    assert good["mean_auc_checked"] > 0.8
    assert abs(blind["mean_auc_checked"] - 0.5) < 0.12
    assert good["mean_auc_checked"] - blind["mean_auc_checked"] > 0.3
    assert blind["real_auc"] == good["real_auc"]  # the yardstick does not depend on the generator
