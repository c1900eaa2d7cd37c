"""Prompt-to-prompt attention control (IntraAug), built on diffusers attention processors.

The source report y and the edited report y' run as one batch from the same starting latent. During
the first η·T denoising steps the edit branch's cross-attention maps are replaced by the source's,
aligned token by token ("refine": a token of y' that is also in y takes y's map at the aligned
position, a new token keeps its own map); optionally, for the first `self_eta`·T steps, the edit
branch's self-attention maps in coarse layers are replaced by the source's as well. The values stay
each branch's own, so the edit branch keeps the source's layout while attending to y' semantics.

Layout is what effusion, cardiomegaly and atelectasis change, so two more of prompt-to-prompt's tools
let the edit draw more than texture: re-weighting multiplies the cross-attention of the tokens y' adds
(`EditSchedule.reweight`), and a `LocalBlend` keeps the source latent outside a mask made from the
cross-attention of the tokens that changed (added in y', removed from y), so the edit branch may
redraw inside the mask as freely as it needs while the rest of the film stays the source's.

The original PairAug code patched UNet modules by the class name `CrossAttention`, which the diffusers
version it pins no longer has, so its edit most likely never ran. Here the control is an attention
processor installed with `unet.set_attn_processor` (and the previous processors restored afterwards),
and tests/test_intra_p2p.py proves that it acts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor

from pairaug.models.generator import TextToImagePipeline

# ----------------------------------------------------------------------------------- token alignment


def align_tokens(source: Sequence[int], edit: Sequence[int]) -> np.ndarray:
    """For each position of `edit`, the aligned position in `source`, or -1 where the token is new.

    Global sequence alignment (Needleman-Wunsch) scoring a match +1, a mismatch -1 and a gap 0, as
    google/prompt-to-prompt aligns the two prompts' token ids; with these scores a substitution never
    beats two gaps, so only equal tokens are aligned, as many as possible and in order.
    """
    n, m = len(source), len(edit)
    score = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(1, n + 1):
        si = source[i - 1]
        row, prev = score[i], score[i - 1]
        for j in range(1, m + 1):
            best = prev[j - 1] + (1 if si == edit[j - 1] else -1)
            row[j] = max(best, prev[j], row[j - 1])
    mapping = np.full(m, -1, dtype=np.int64)
    i, j = n, m
    while i > 0 and j > 0:  # trace back, preferring a match so ties align tokens early in both prompts
        if source[i - 1] == edit[j - 1] and score[i, j] == score[i - 1, j - 1] + 1:
            mapping[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif score[i, j] == score[i - 1, j]:
            i -= 1
        else:
            j -= 1
    return mapping


def prompt_token_ids(pipe: TextToImagePipeline, prompts: list[str]) -> torch.Tensor:
    """The padded token ids the pipeline's `encode_prompt` feeds the text encoder (same tokenizer call)."""
    max_length = min(pipe.tokenizer.model_max_length or 77, pipe.text_encoder.config.max_position_embeddings)
    return pipe.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                          return_tensors="pt").input_ids


def refine_mapper(source_ids: torch.Tensor, edit_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair: (index into the source's key tokens for each edit token, whether that token is shared).

    The whole padded sequences are aligned, so padding (and, in CLIP tokenizers, the end-of-text tokens
    padding repeats) is matched like any other shared token.
    """
    index, shared = [], []
    for src, edit in zip(source_ids.tolist(), edit_ids.tolist()):
        mapping = torch.from_numpy(align_tokens(src, edit))
        shared.append(mapping >= 0)
        index.append(mapping.clamp(min=0))
    return torch.stack(index), torch.stack(shared)


# ----------------------------------------------------------------------------------- the controller


@dataclass(frozen=True)
class EditSchedule:
    """Which denoising steps (0 = the noisiest) swap cross- and self-attention."""

    steps: int  # denoising steps actually run
    eta: float = 0.5  # cross-attention swapped while step < eta * steps
    self_eta: float = 0.2  # self-attention swapped while step < self_eta * steps ...
    self_max_positions: int = 256  # ... and only in layers with at most this many query positions
    reweight: float = 1.0  # the edit branch's cross-attention to the tokens y' adds, times this (every step)

    def cross(self, step: int) -> bool:
        return step < self.eta * self.steps

    def self_attention(self, step: int, positions: int) -> bool:
        return step < self.self_eta * self.steps and positions <= self.self_max_positions


# observer(step, layer, is_cross, source maps, edit maps), maps of the conditional rows: (N, heads, Q, K)
Observer = Callable[[int, str, bool, torch.Tensor, torch.Tensor], None]


class P2PController:
    """Edits the attention maps of a batch laid out as [uncond y, uncond y', cond y, cond y'] (N pairs each).

    Under classifier-free guidance only the conditional half is edited (as google/prompt-to-prompt does);
    with guidance 1 the batch is just [cond y, cond y']. The sampling loop sets `step` before each UNet call.
    """

    def __init__(self, n_pairs: int, index: torch.Tensor, shared: torch.Tensor, schedule: EditSchedule,
                 observer: Observer | None = None, blend: LocalBlend | None = None):
        self.n, self.schedule, self.observer, self.blend = n_pairs, schedule, observer, blend
        self.index, self.shared = index, shared
        self.added = ~shared  # (N, K) the edit prompt's tokens that the source prompt does not have
        kept = torch.zeros_like(shared)
        for row, (idx, sh) in enumerate(zip(index, shared)):
            kept[row, idx[sh]] = True
        self.removed = ~kept  # (N, K) the source prompt's tokens that no edit token is aligned to
        self.step = 0

    def active(self, is_cross: bool, queries: int) -> bool:
        """Whether this call needs explicit maps (an edit, or an observer); others take the fused path."""
        if self.observer is not None:
            return True
        if is_cross:
            return self.schedule.cross(self.step) or self.schedule.reweight != 1.0 or self.blend is not None
        return self.schedule.self_attention(self.step, queries)

    def __call__(self, probs: torch.Tensor, is_cross: bool, layer: str) -> torch.Tensor:
        """probs: (batch, heads, queries, keys) softmax maps; returns the maps to apply to the values."""
        n = self.n
        if probs.shape[0] not in (2 * n, 4 * n):
            raise ValueError(f"attention batch of {probs.shape[0]} rows does not hold {n} source/edit pairs")
        cond = probs.shape[0] - 2 * n
        src, edit = probs[cond:cond + n], probs[cond + n:]
        if is_cross and self.blend is not None:  # the maps as the model drew them, before any edit
            self.blend.collect(src, edit, self.removed.to(probs.device), self.added.to(probs.device))
        if is_cross and self.schedule.cross(self.step):
            index = self.index.to(probs.device)[:, None, None, :].expand_as(src)
            shared = self.shared.to(probs.device)[:, None, None, :]
            probs[cond + n:] = torch.where(shared, src.gather(-1, index), edit)
        elif not is_cross and self.schedule.self_attention(self.step, probs.shape[-2]):
            probs[cond + n:] = src
        if is_cross and self.schedule.reweight != 1.0:
            # not renormalised (as prompt-to-prompt's equalizer): every other token's map stays as it was
            scale = torch.where(self.added.to(probs.device), self.schedule.reweight, 1.0).to(probs.dtype)
            probs[cond + n:] = probs[cond + n:] * scale[:, None, None, :]
        if self.observer is not None:
            self.observer(self.step, layer, is_cross, probs[cond:cond + n], probs[cond + n:])
        return probs


class LocalBlend:
    """prompt-to-prompt's local blend: after each sampling step from `start`·T on, the edit branch's latent
    is the source branch's outside a mask and its own inside, so only the region of the change is redrawn.

    The mask, per pair: the cross-attention of the changed tokens (removed from y in the source branch,
    added in y' in the edit branch), summed over those tokens, averaged over heads and over the layers
    with at most `max_positions` queries, max-pooled (3x3), scaled to the latent's size, divided by its
    maximum and cut at `threshold`; the union of the two branches' masks. `mask` holds the last one
    applied, (N, 1, h, w) of 0/1.
    """

    def __init__(self, threshold: float = 0.3, start: float = 0.2, max_positions: int = 256):
        self.threshold, self.start, self.max_positions = threshold, start, max_positions
        self.mask: torch.Tensor | None = None
        self._maps: list[torch.Tensor] = []
        self._size: tuple[int, int] | None = None

    def collect(self, src: torch.Tensor, edit: torch.Tensor, removed: torch.Tensor, added: torch.Tensor) -> None:
        """src, edit: (N, heads, Q, K) conditional maps of one cross-attention layer; removed, added: (N, K)."""
        queries = src.shape[2]
        if queries > self.max_positions or self._size is None:
            return
        h, w = self._size
        side = (queries * h // w) ** 0.5
        qh, qw = round(side), queries // max(round(side), 1)
        maps = torch.stack([(src * removed[:, None, None, :]).sum(-1).mean(1),
                            (edit * added[:, None, None, :]).sum(-1).mean(1)], dim=1)  # (N, 2, Q)
        maps = maps.float().view(len(maps), 2, qh, qw)
        self._maps.append(torch.nn.functional.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False))

    def begin(self, latent_size: tuple[int, int]) -> None:
        self._size, self._maps, self.mask = latent_size, [], None

    def __call__(self, step: int, steps: int, x: torch.Tensor) -> torch.Tensor:
        """x: (2N, C, h, w) latents [source; edit] after sampling step `step` of `steps`; returns them blended."""
        maps, self._maps = self._maps, []
        if not maps or step < self.start * steps:
            return x
        m = torch.nn.functional.max_pool2d(torch.stack(maps).mean(0), 3, stride=1, padding=1)
        m = m / m.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None]
        mask = (m > self.threshold).any(dim=1, keepdim=True).to(x.dtype)  # (N, 1, h, w)
        n = len(mask)
        self.mask = mask
        return torch.cat([x[:n], x[:n] + mask * (x[n:] - x[:n])])


# ------------------------------------------------------------------------------ the attention processor


class P2PAttnProcessor(AttnProcessor):
    """diffusers' plain attention with explicit probabilities (`attn.get_attention_scores`) that a
    controller may edit before they weight the values. Same maths as `AttnProcessor`.

    A call the controller leaves alone (its `active(is_cross, queries)` is false: outside the swap
    windows, layers too fine for self-attention injection) runs the layer's previous processor instead
    (diffusers' fused attention by default): explicit maps cost ~12% per UNet call on CPU.
    """

    def __init__(self, controller: Callable[[torch.Tensor, bool, str], torch.Tensor], layer: str,
                 fallback: Callable | None = None):
        self.controller, self.layer, self.fallback = controller, layer, fallback

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs
                 ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        active = getattr(self.controller, "active", None)
        if self.fallback is not None and active is not None:
            queries = hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[2] * hidden_states.shape[3]
            if not active(is_cross, queries):
                return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        query = attn.head_to_batch_dim(query)

        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch * heads, queries, keys)
        shape = probs.shape
        probs = self.controller(probs.view(batch, attn.heads, shape[1], shape[2]), is_cross, self.layer).reshape(shape)

        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextlib.contextmanager
def attention_control(unet: UNet2DConditionModel, controller: Callable[[torch.Tensor, bool, str], torch.Tensor]
                      ) -> Iterator[None]:
    """Route every attention layer of `unet` through `controller`; restore the previous processors on exit."""
    original = unet.attn_processors
    unet.set_attn_processor({name: P2PAttnProcessor(controller, name, proc) for name, proc in original.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(original)


# ----------------------------------------------------------------------------------------- sampling


@torch.inference_mode()
def edit_sample(pipe: TextToImagePipeline, source_prompts: list[str], edit_prompts: list[str], latents: torch.Tensor,
                *, steps: int, guidance: float, eta: float, self_eta: float, self_max_positions: int,
                start: int = 0, observer: Observer | None = None, reweight: float = 1.0,
                blend: LocalBlend | None = None, nulls: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise y and y' as one batch from the same `latents` (N, C, h, w) under attention control.

    `start` skips the first sampling steps (DDIM inversion starts where the latent still holds the
    image); the schedule counts the steps actually run. `nulls`: per-step unconditional embeddings of the
    inversion (generate/inversion.py), used by both branches. Returns the final latents (source, edit).
    """
    n = len(source_prompts)
    if len(edit_prompts) != n or latents.shape[0] != n:
        raise ValueError("source prompts, edit prompts and latents must have one row per pair")
    cond = pipe.encode_prompt(list(source_prompts) + list(edit_prompts))  # [cond y; cond y']
    empty = pipe.encode_prompt([""]).expand_as(cond)
    index, shared = refine_mapper(prompt_token_ids(pipe, source_prompts), prompt_token_ids(pipe, edit_prompts))
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    timesteps = pipe.scheduler.timesteps[start:]
    if nulls is not None and len(nulls) != len(timesteps):
        raise ValueError(f"{len(nulls)} null embeddings for {len(timesteps)} sampling steps")
    schedule = EditSchedule(len(timesteps), eta, self_eta, self_max_positions, reweight)
    controller = P2PController(n, index, shared, schedule, observer, blend)
    if blend is not None:
        blend.begin(tuple(latents.shape[-2:]))
    x = torch.cat([latents, latents])  # the same starting latent for both branches
    with attention_control(pipe.unet, controller):
        for i, t in enumerate(timesteps):
            controller.step = i
            model_in = pipe.scheduler.scale_model_input(x, t)
            uncond = empty if nulls is None else torch.cat([nulls[i], nulls[i]])
            # guided_eps batches [uncond; cond] over [y, y'] rows: [uncond y, uncond y', cond y, cond y']
            eps = pipe.guided_eps(model_in, t, cond, uncond, guidance)
            x = pipe.scheduler.step(eps, t, x).prev_sample
            if blend is not None:
                x = blend(i, len(timesteps), x)
    return x[:n], x[n:]
