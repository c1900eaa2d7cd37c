"""One device story: every stage that runs a model puts it and its batches on `launch.device`'s device.

On a machine without a GPU these run the CPU branch (auto → cpu, cuda refused in one line); where torch
sees a GPU the same tests check the CUDA branch (auto → this rank's GPU, models and batches there).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import CLIPModel

from pairaug.errors import ParamError
from pairaug.launch import (
    DEVICE_ENV,
    PRECISION_ENV,
    LaunchConfig,
    autocast,
    configure,
    generation_dtype,
    stage_device,
)
from pairaug.measurement.encoder import VisionLanguageModel
from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.scorer import load_scorer
from pairaug.models.tokenizer import train_tokenizer
from pairaug.parallel import Ranks
from pairaug.params import load_params, section
from pairaug.train.contrastive import ContrastiveConfig, train_clip

GPU = torch.cuda.is_available()
WORDS = ["no", "mild", "large", "left", "right", "effusion", "edema", "cardiomegaly", "pneumothorax"]


@pytest.fixture
def device_env(monkeypatch):
    """Each test sets launch.device itself; the process's choice is restored after it."""
    monkeypatch.setenv(DEVICE_ENV, "auto")  # restored (unset) after the test, whatever configure() wrote
    monkeypatch.setenv(PRECISION_ENV, "no")
    return monkeypatch


def _tiny_clip(tmp_path=None):
    texts = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 5)) for i in range(16)]
    tokenizer = train_tokenizer(texts, 60, 16)
    arch = ClipArch(projection_dim=8, text_hidden=8, text_mlp=16, text_layers=1, text_heads=2, max_positions=16,
                    vision_hidden=8, vision_mlp=16, vision_layers=1, vision_heads=2, patch_size=4, channels=1)
    torch.manual_seed(0)
    model = CLIPModel(embedded_config(arch, len(tokenizer), 16))
    preprocess = ImagePreprocessor(16, 1, (0.5,), (0.25,))
    if tmp_path is not None:
        model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
        preprocess.save(tmp_path)
    return model, tokenizer, preprocess, texts


def test_launch_device_choices(device_env):
    configure(LaunchConfig(device="cpu"))
    assert stage_device() == torch.device("cpu")
    configure(LaunchConfig(device="auto"))
    assert stage_device(Ranks(1, 2, 1)) == (torch.device("cuda", 1) if GPU else torch.device("cpu"))
    assert generation_dtype("float16", torch.device("cpu")) == torch.float32  # half precision only on a GPU
    with autocast(torch.device("cpu")):  # mixed precision never applies on the CPU
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    if not GPU:
        with pytest.raises(ParamError, match=r"launch\.device.*cuda.*no CUDA device"):
            section(LaunchConfig, {"launch": {"device": "cuda"}}, "launch")
    with pytest.raises(ParamError, match=r"launch\.device"):
        section(LaunchConfig, {"launch": {"device": "tpu"}}, "launch")
    with pytest.raises(ParamError, match=r"launch\.mixed_precision"):
        section(LaunchConfig, {"launch": {"mixed_precision": "fp8"}}, "launch")


@pytest.mark.parametrize("choice", ["cpu", "auto"])
def test_training_puts_model_and_batches_on_the_stage_device(device_env, choice):
    """The model trains where launch.device says, and every batch it sees is there too."""
    configure(LaunchConfig(device=choice))
    expected = stage_device()
    model, tokenizer, preprocess, texts = _tiny_clip()
    seen: list[torch.device] = []
    model.vision_model.register_forward_pre_hook(lambda _m, args, kwargs: seen.append(kwargs["pixel_values"].device),
                                                 with_kwargs=True)
    images = torch.randint(0, 256, (16, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = ContrastiveConfig(steps=2, batch_size=8, warmup_steps=1, select_every=2)
    trained, _ = train_clip(model, tokenizer, preprocess, images, texts, cfg, seed=0, select=lambda _m: 0.0)
    assert {p.device for p in trained.parameters()} == {expected}
    assert seen and set(seen) == {expected}


@pytest.mark.parametrize("choice", ["cpu", "auto"])
def test_scoring_and_evaluation_models_sit_on_the_stage_device(device_env, tmp_path, choice):
    configure(LaunchConfig(device=choice))
    expected = stage_device()
    _tiny_clip(tmp_path)
    scorer, vlp = load_scorer(tmp_path), VisionLanguageModel(tmp_path)
    assert {p.device for p in scorer.model.parameters()} == {expected} == {p.device for p in vlp.model.parameters()}
    films = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    img, txt = scorer.encode_images(films), scorer.encode_texts(["no effusion", "large effusion"])
    assert img.shape == (3, 8) and txt.shape == (2, 8)  # back on the CPU as numpy, whatever the device
    np.testing.assert_allclose(vlp.encode(torch.from_numpy(films)).embeddings, img, atol=1e-5)


def test_mixed_precision_no_survives_dvc_writing_params_back(tmp_path):
    """`dvc exp run -S` rewrites params.yaml in YAML 1.2, dropping the quotes: `no` must still mean "no"."""
    (tmp_path / "params.yaml").write_text("launch:\n  mixed_precision: no\n  device: cpu\n")
    cfg = section(LaunchConfig, load_params(tmp_path / "params.yaml"), "launch")
    assert cfg.mixed_precision == "no"
