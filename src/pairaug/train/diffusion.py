"""Diffusion training of the embedded generator (`fit-generator`).

Text embeddings of every training report are computed once with the frozen text encoder; each step
noises a batch of images at random timesteps (DDPM, cosine schedule) and regresses the noise. 10% of
the captions are dropped to the empty prompt so classifier-free guidance works at sampling time. An
exponential moving average of the weights is what gets saved. The pipeline's device (the stage's) is
where it trains; the random draws stay on the CPU so they do not depend on the device.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from tqdm import tqdm

from pairaug.launch import autocast, grad_scaler
from pairaug.models.generator import TextToImagePipeline
from pairaug.params import Params, Positive, Share

log = logging.getLogger(__name__)


@dataclass
class DiffusionTrainConfig(Params):
    steps: Annotated[int, Positive] = 600
    batch_size: Annotated[int, Positive] = 32
    lr: Annotated[float, Positive] = 1e-3
    warmup_steps: int = 50
    text_dropout: Annotated[float, Share] = 0.1
    ema_decay: Annotated[float, Share] = 0.995


def train_unet(pipe: TextToImagePipeline, images: torch.Tensor, texts: list[str], cfg: DiffusionTrainConfig,
               seed: int, noise_scheduler, on_step=None) -> UNet2DConditionModel:
    """Train `pipe.unet` on uint8 gray `images` (N, H, W) captioned by `texts`; return the EMA UNet."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = pipe.device
    scaler = grad_scaler(device)
    unet = pipe.unet.train().requires_grad_(True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    with torch.no_grad():
        x0_all = pipe.encode_image(images.numpy())
        cond_all = torch.cat([pipe.encode_prompt(texts[s:s + 256]) for s in range(0, len(texts), 256)])
        uncond = pipe.encode_prompt([""])
    n = len(texts)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * (0.55 + 0.45 * math.cos(math.pi * s / cfg.steps)))
    timesteps = noise_scheduler.config.num_train_timesteps
    with tqdm(total=cfg.steps, desc="fit-generator", unit="step", disable=None) as bar:
        for step in range(cfg.steps):
            idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            x0, cond = x0_all[idx], cond_all[idx].clone()
            drop = torch.rand(cfg.batch_size, generator=gen) < cfg.text_dropout
            cond[drop.to(device)] = uncond[0]
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, timesteps, (cfg.batch_size,), generator=gen).to(device)
            noisy = noise_scheduler.add_noise(x0, noise, t)
            with autocast(device):
                loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=cond).sample.float(), noise)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # warm-up the average early on
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters()):
                    pe.lerp_(p, 1 - decay)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if on_step:
                on_step(step, loss.item())
    unet.eval().requires_grad_(False)
    return ema
