"""DDIM inversion of a real image conditioned on its report: the latent from which the sampler redraws it.

With `intra.init: inversion` IntraAug starts both branches from the inversion of the patient's real
film x (conditioned on its report y, guidance 1), so the edited image x' is an edit of *this* film;
PairAug's code started from random noise and used the real image only when pruning.

The DDIM update runs backwards with diffusers' `DDIMInverseScheduler` on the sampler's own timesteps.
Each step evaluates ε at the point it starts from; `refine` fixed-point iterations re-evaluate ε at the
point reached, which is what the sampler will see there, so the sampler retraces the path more exactly.

Inversion stops short of timesteps whose latent no longer carries the image: the embedded generator's
cosine schedule reaches √ᾱ ≈ 5e-5 at t = 999, where the sampler's first x̂₀ estimate amplifies any
ε error 2·10⁴ times and the film is lost (measured: 25 dB → 34 dB reconstruction PSNR by starting at
the next timestep). Stable Diffusion's schedule keeps √ᾱ ≈ 0.07 there, so nothing is skipped for it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from pairaug.models.generator import TextToImagePipeline

MIN_SIGNAL = 0.01  # the least √ᾱ_t at which inversion may stop (see the module docstring)


def inversion_start(scheduler: DDIMScheduler, steps: int) -> int:
    """Index of the first sampling timestep whose latent still carries the image (√ᾱ_t ≥ MIN_SIGNAL)."""
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod
    for i, t in enumerate(scheduler.timesteps.tolist()):
        if float(alphas[t]) ** 0.5 >= MIN_SIGNAL:
            return i
    raise ValueError(f"no sampling timestep of {steps} keeps √ᾱ ≥ {MIN_SIGNAL}")


def inverse_scheduler(pipe: TextToImagePipeline) -> DDIMInverseScheduler:
    """The inverse of the pipeline's DDIM sampler (same betas, spacing and clipping)."""
    accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters
    return DDIMInverseScheduler.from_config({k: v for k, v in pipe.scheduler.config.items() if k in accepted})


@torch.inference_mode()
def ddim_trajectory(pipe: TextToImagePipeline, latents: torch.Tensor, prompts: list[str], steps: int,
                    refine: int = 0) -> tuple[list[torch.Tensor], int]:
    """Clean latents (N, C, h, w) → ([z_clean, ..., z at sampling step `start`], start): the DDIM inversion
    path under `prompts` at guidance 1, the least noisy point first. Sampling step `start + i` goes from
    path[-1 - i] to path[-2 - i]."""
    if latents.shape[0] != len(prompts):
        raise ValueError("one prompt per image")
    cond = pipe.encode_prompt(list(prompts))
    start = inversion_start(pipe.scheduler, steps)
    inverse = inverse_scheduler(pipe)
    inverse.set_timesteps(steps, device=pipe.device)
    if not torch.equal(inverse.timesteps.flip(0).cpu(), pipe.scheduler.timesteps.cpu()):
        raise ValueError("the inverse scheduler's timesteps do not retrace the sampler's "
                         f"({pipe.scheduler.config.timestep_spacing} spacing)")
    path = [latents.to(pipe.device, pipe.unet.dtype)]
    for t in inverse.timesteps[:steps - start]:
        z = path[-1]
        eps = pipe.unet(inverse.scale_model_input(z, t), t, encoder_hidden_states=cond).sample
        nxt = inverse.step(eps, t, z).prev_sample
        for _ in range(refine):
            eps = pipe.unet(inverse.scale_model_input(nxt, t), t, encoder_hidden_states=cond).sample
            nxt = inverse.step(eps, t, z).prev_sample
        path.append(nxt)
    return path, start


def ddim_invert(pipe: TextToImagePipeline, latents: torch.Tensor, prompts: list[str], steps: int,
                refine: int = 0) -> tuple[torch.Tensor, int]:
    """Clean latents (N, C, h, w) of real images → (noisy latents, start): DDIM sampling of `prompts` from
    sampling step `start` with these latents redraws the images (exactly at guidance 1 as `refine` grows)."""
    path, start = ddim_trajectory(pipe, latents, prompts, steps, refine)
    return path[-1], start


@dataclass
class Inversion:
    """Where the sampler starts to redraw real films, and the unconditional embeddings it uses per step.

    `nulls[i]` (N, L, D) replaces the empty prompt's embedding at the i-th sampling step run (plain DDIM
    inversion: None, the sampler uses the empty prompt)."""

    latents: torch.Tensor
    start: int
    nulls: list[torch.Tensor] | None = None


def invert(pipe: TextToImagePipeline, latents: torch.Tensor, prompts: list[str], steps: int, *, method: str,
           guidance: float, refine: int = 0, inner_steps: int = 2, lr: float = 0.05) -> Inversion:
    """Invert clean latents under their prompts for redrawing at `guidance` with `method`:

    - "ddim": plain DDIM inversion at guidance 1 (drifts when the sampler guides: the guided ε differs
      from the one inverted);
    - "negative_prompt": the same inversion, sampled with the source prompt's embedding as the
      unconditional one (Miyake et al. 2023): the guided ε of the source prompt is then its conditional ε,
      so the source redraws as at guidance 1, at no extra cost;
    - "null_text": per-step unconditional embeddings optimised so that the guided sampler retraces the
      inversion path (Mokady et al., CVPR 2023), `inner_steps` Adam steps a sampling step.
    """
    path, start = ddim_trajectory(pipe, latents, prompts, steps, refine)
    if method == "ddim":
        return Inversion(path[-1], start)
    if method == "negative_prompt":
        cond = pipe.encode_prompt(list(prompts))
        return Inversion(path[-1], start, [cond] * (len(path) - 1))
    if method == "null_text":
        return Inversion(path[-1], start, null_text_embeddings(pipe, path, prompts, steps, start, guidance,
                                                                 inner_steps, lr))
    raise ValueError(f"unknown inversion method '{method}' (ddim | negative_prompt | null_text)")


def null_text_embeddings(pipe: TextToImagePipeline, path: list[torch.Tensor], prompts: list[str], steps: int,
                         start: int, guidance: float, inner_steps: int, lr: float) -> list[torch.Tensor]:
    """Null-text optimisation: for each sampling step, the unconditional embedding (one per image, starting
    from the previous step's) that makes the guided DDIM step land on the inversion path."""
    with torch.inference_mode():
        cond = pipe.encode_prompt(list(prompts))
        empty = pipe.encode_prompt([""]).expand_as(cond)
    # inference-mode tensors cannot enter autograd: plain copies
    cond, null = cond.clone(), empty.clone()
    z = path[-1].clone()
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    nulls = []
    frozen = [p for p in pipe.unet.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for i, t in enumerate(pipe.scheduler.timesteps[start:]):
            target = path[-2 - i].clone()
            model_in = pipe.scheduler.scale_model_input(z, t)
            with torch.no_grad():
                eps_c = pipe.unet(model_in, t, encoder_hidden_states=cond).sample
            null = null.detach().requires_grad_(True)
            opt = torch.optim.Adam([null], lr=lr)
            for _ in range(inner_steps):
                eps_u = pipe.unet(model_in, t, encoder_hidden_states=null).sample
                prev = pipe.scheduler.step(eps_u + guidance * (eps_c - eps_u), t, z).prev_sample
                # summed over images: each image's embedding gets its own gradient, whatever the batch
                loss = torch.nn.functional.mse_loss(prev, target, reduction="none").flatten(1).mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            null = null.detach()
            with torch.no_grad():
                eps_u = pipe.unet(model_in, t, encoder_hidden_states=null).sample
                z = pipe.scheduler.step(eps_u + guidance * (eps_c - eps_u), t, z).prev_sample
            nulls.append(null)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return nulls


@torch.inference_mode()
def reconstruct(pipe: TextToImagePipeline, latents: torch.Tensor, prompts: list[str], steps: int, guidance: float,
                start: int = 0, nulls: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Plain DDIM sampling of `prompts` from `latents` at sampling step `start` (no attention control);
    `nulls`: per-step unconditional embeddings (`Inversion.nulls`) instead of the empty prompt's."""
    cond = pipe.encode_prompt(list(prompts))
    empty = pipe.encode_prompt([""]).expand_as(cond)
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    z = latents
    for i, t in enumerate(pipe.scheduler.timesteps[start:]):
        uncond = empty if nulls is None else nulls[i]
        eps = pipe.guided_eps(pipe.scheduler.scale_model_input(z, t), t, cond, uncond, guidance)
        z = pipe.scheduler.step(eps, t, z).prev_sample
    return z
