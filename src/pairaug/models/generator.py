"""The text-to-image generator, in diffusers terms.

`TextToImagePipeline` = `UNet2DConditionModel` conditioned on a frozen text encoder's hidden states +
a diffusers scheduler (DDPM to train, DDIM to sample) + an optional `AutoencoderKL`. Without a VAE
the UNet works in pixel space (the embedded default, trained in the pipeline); with one it works in
latent space, as Stable Diffusion and RoentGen do, so a RoentGen folder runs through the same code.
No safety checker is ever loaded (it blacks out radiographs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from pydantic import Strict, StrictInt
from transformers import AutoTokenizer, CLIPTextModel, PreTrainedTokenizerBase

from pairaug.models.clip import check_folder
from pairaug.params import Params


# A YAML list of integers (strict mode alone would take only a Python tuple, which YAML cannot write).
Ints = Annotated[tuple[StrictInt, ...], Strict(False)]


@dataclass
class UNetArch(Params):
    """The embedded pixel-space UNet (ignored when generator.checkpoint names a folder)."""

    block_out_channels: Ints = (32, 64, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    cross_attention_levels: Ints = (2,)  # which resolution levels cross-attend to the text


def embedded_unet(arch: UNetArch, image_size: int, cross_attention_dim: int, channels: int = 1) -> UNet2DConditionModel:
    levels = len(arch.block_out_channels)
    down = tuple("CrossAttnDownBlock2D" if i in arch.cross_attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple("CrossAttnUpBlock2D" if (levels - 1 - i) in arch.cross_attention_levels else "UpBlock2D"
               for i in range(levels))
    return UNet2DConditionModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(arch.block_out_channels), layers_per_block=arch.layers_per_block,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=cross_attention_dim, attention_head_dim=arch.attention_head_dim,
        norm_num_groups=arch.norm_num_groups)


def train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=False)


class TextToImagePipeline(DiffusionPipeline):
    """Report → radiograph. `vae=None`: pixel space; otherwise latent space (Stable Diffusion layout)."""

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, unet: UNet2DConditionModel, scheduler: SchedulerMixin, text_encoder: CLIPTextModel,
                 tokenizer: PreTrainedTokenizerBase, vae: AutoencoderKL | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)

    # ---------------------------------------------------------- pieces used by inter and intra generation

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    def latent_size(self, height: int) -> int:
        return height // self.vae_scale

    @torch.inference_mode()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text → the encoder's last hidden states (what the UNet cross-attends to)."""
        max_length = min(self.tokenizer.model_max_length or 77, self.text_encoder.config.max_position_embeddings)
        tok = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                             return_tensors="pt")
        out = self.text_encoder(input_ids=tok.input_ids.to(self.device))
        return out.last_hidden_state.to(self.unet.dtype)

    def initial_noise(self, seeds: list[int], height: int) -> torch.Tensor:
        """One latent per seed, each from its own generator: a pair's image does not depend on its batch."""
        size = self.latent_size(height)
        noise = [torch.randn((1, self.latent_channels, size, size), generator=torch.Generator().manual_seed(int(s)))
                 for s in seeds]
        return torch.cat(noise).to(self.device, self.unet.dtype)

    def guided_eps(self, latents: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor,
                   guidance: float) -> torch.Tensor:
        """Classifier-free guidance: one UNet call on [uncond; cond]."""
        if guidance == 1.0:
            return self.unet(latents, t, encoder_hidden_states=cond).sample
        both = self.unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        eps_u, eps_c = both.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents → uint8 gray images (N, H, W)."""
        if self.vae is not None:
            x = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        else:
            x = latents
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round()
        x = x.mean(dim=1) if x.shape[1] != 1 else x[:, 0]  # RGB decoders (RoentGen) → gray
        return x.to(torch.uint8).cpu().numpy()

    @torch.inference_mode()
    def encode_image(self, gray: np.ndarray) -> torch.Tensor:
        """uint8 gray images (N, H, W) → latents (the inverse of `decode`, for DDIM inversion)."""
        x = torch.from_numpy(np.asarray(gray)).float().div(127.5).sub(1).unsqueeze(1).to(self.device)
        if self.vae is not None:
            x = x.expand(-1, self.vae.config.in_channels, -1, -1).to(self.vae.dtype)
            return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
        return x.to(self.unet.dtype)

    @torch.inference_mode()
    def __call__(self, prompts: list[str], seeds: list[int], *, num_inference_steps: int = 20,
                 guidance_scale: float = 3.5, height: int | None = None) -> np.ndarray:
        """Generate one image per prompt from per-prompt seeds; returns uint8 (N, H, W)."""
        height = height or self.unet.config.sample_size * self.vae_scale
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt([""]).expand_as(cond)
        latents = self.initial_noise(seeds, height) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.scheduler.timesteps:
            model_in = self.scheduler.scale_model_input(latents, t)
            eps = self.guided_eps(model_in, t, cond, uncond, guidance_scale)
            latents = self.scheduler.step(eps, t, latents).prev_sample
        return self.decode(latents)


def load_generator(folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> TextToImagePipeline:
    """Load ours or a Stable Diffusion–format folder (RoentGen) with a DDIM sampler and no safety checker."""
    path = check_folder(folder, "generator checkpoint")
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype, local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
    scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    vae = None
    if (path / "vae" / "config.json").exists():
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, local_files_only=True)
    # Pixel space: clip the predicted clean image to [-1, 1] (it markedly steadies a small model's
    # samples); latent space must not be clipped. "trailing" spacing suits few sampling steps.
    scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=vae is None, set_alpha_to_one=False,
                                          timestep_spacing="trailing")
    pipe = TextToImagePipeline(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    for module in (unet, text_encoder, vae):
        if module is not None:
            module.eval().requires_grad_(False)
    return pipe.to(device)
