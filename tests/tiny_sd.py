"""A tiny Stable Diffusion v1-layout folder, saved by diffusers' own pipeline (a stand-in for RoentGen)."""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, PreTrainedTokenizerBase


def save_tiny_sd(folder: Path, tokenizer: PreTrainedTokenizerBase, text_encoder: CLIPTextModel,
                 vae_channels: tuple[int, ...] = (8, 16), image_size: int = 32) -> Path:
    """4-channel latent UNet (16x16 latents, cross-attention width 32), a VAE downscaling
    2 ** (len(vae_channels) - 1) times, PNDM scheduler, no safety checker; returns `folder`."""
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    levels = len(vae_channels)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=vae_channels,
                        latent_channels=4, norm_num_groups=4, sample_size=image_size)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder
