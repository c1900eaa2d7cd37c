"""Contrastive (CLIP / InfoNCE) training on image-report pairs, with checkpoint selection on valid.

Used by `fit-scorer` (the pruning scorer) and by `pretrain@mix` (the VLP model). Images are held as
one uint8 tensor (the pipeline's images are small; a user's 224 px MIMIC run streams through the
same loop in batches). Augmentation is a small random shift, enough to regularise a scarce train set, and
optionally (`sentence_keep`) a random subset of each report's sentences, as ConVIRT samples sentences:
the text tower then also sees short texts like the zero-shot prompts ("edema" / "no edema").

Under `torchrun` / `accelerate launch` (several ranks) the model is wrapped in DistributedDataParallel
and `batch_size` stays the *global* batch: every rank draws the same batch and takes its 1/N slice, the
embeddings of all slices are gathered (with gradients) so the contrastive loss sees the whole batch's
negatives, and DDP averages the gradients. One step then equals a single-process step on that batch.
The model trains on the stage's device (`launch.device`; batches are drawn and augmented on the CPU, so
the random stream does not depend on the device, then moved), under `launch.mixed_precision` on a GPU.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import CLIPModel, PreTrainedTokenizerBase

from pairaug.data.labeler import split_sentences
from pairaug.errors import ParamError
from pairaug.launch import autocast, grad_scaler, stage_device
from pairaug.models.clip import ImagePreprocessor, text_max_length, tokenize
from pairaug.parallel import Ranks
from pairaug.params import Params, Positive, Share

log = logging.getLogger(__name__)


@dataclass
class ContrastiveConfig(Params):
    steps: Annotated[int, Positive] = 200  # optimizer steps when `epochs` is null
    # The budget as passes over the training pairs: ceil(epochs * pairs / batch_size) steps, at least
    # min_steps and at most max_steps (null: no cap). One rule for every mix: more pairs, more updates.
    epochs: Annotated[float, Positive] | None = None
    min_steps: Annotated[int, Positive] = 1
    max_steps: Annotated[int, Positive] | None = None
    batch_size: Annotated[int, Positive] = 128
    lr: Annotated[float, Positive] = 5e-4
    weight_decay: float = 0.1
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9  # SGD only (CheXzero used SGD, lr 1e-4, momentum 0.9)
    warmup_steps: int = 20
    shift: int = 2  # random translation in pixels
    # Text augmentation: each draw of a report keeps each of its sentences with this probability (at least
    # one, in their order); null: the whole report every time.
    sentence_keep: Annotated[float, Share] | None = None
    select_every: Annotated[int, Positive] = 10  # evaluate on valid every N steps (and at the end)

    def rules(self) -> None:
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise ParamError("max_steps", f"must be at least min_steps ({self.min_steps}), got {self.max_steps}")

    def budget(self, pairs: int) -> int:
        """Optimizer steps for a training set of `pairs` pairs: `steps`, or the passes rule of `epochs`."""
        if self.epochs is None:
            return self.steps
        steps = max(self.min_steps, math.ceil(self.epochs * pairs / min(self.batch_size, max(1, pairs))))
        return min(steps, self.max_steps) if self.max_steps is not None else steps


@dataclass
class TrainHistory:
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_score: list[float] = field(default_factory=list)
    best_step: int = 0
    best_score: float = -math.inf

    def as_dict(self) -> dict:
        return {"step": self.steps, "train_loss": self.train_loss, "valid_score": self.valid_score,
                "best_step": self.best_step, "best_score": self.best_score}


def clip_loss(model: CLIPModel | DistributedDataParallel, pixel_values: torch.Tensor, input_ids: torch.Tensor,
              attention_mask: torch.Tensor, gather: bool = False) -> torch.Tensor:
    """Symmetric InfoNCE over the batch; `gather`: over the batch of all ranks (this rank holds a slice).
    The inputs go to the model's device."""
    clip = model.module if isinstance(model, DistributedDataParallel) else model
    device = clip.device
    with autocast(device):
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                    pixel_values=pixel_values.to(device))
    img, txt = out.image_embeds.float(), out.text_embeds.float()  # L2-normalised projections
    if gather:  # all_gather with gradients: each rank's loss is the global batch's loss
        with warnings.catch_warnings():  # torch 2.x points this public op at a private replacement
            warnings.simplefilter("ignore", FutureWarning)
            img, txt = torch.cat(dist_fn.all_gather(img)), torch.cat(dist_fn.all_gather(txt))
    logits = (torch.matmul(txt, img.t()) * clip.logit_scale.exp()).t()  # as CLIPModel computes logits_per_image
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `shift` pixels (edge padding), a cheap augmentation."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])  # (n, w)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, padded.shape[-1])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)


def sample_sentences(sentences: list[str], keep: float, generator: torch.Generator) -> str:
    """A random subset of `sentences` (each kept with probability `keep`, at least one), in their order."""
    kept = (torch.rand(len(sentences), generator=generator) < keep).tolist()
    if not any(kept):
        kept[int(torch.randint(len(sentences), (1,), generator=generator))] = True
    return " ".join(s for s, k in zip(sentences, kept) if k)


def train_clip(model: CLIPModel, tokenizer: PreTrainedTokenizerBase, preprocess: ImagePreprocessor,
               images: torch.Tensor, texts: list[str], cfg: ContrastiveConfig, seed: int,
               select: Callable[[CLIPModel], float], *, weights: torch.Tensor | None = None,
               on_eval: Callable[[int, float, float], None] | None = None,
               ranks: Ranks | None = None) -> tuple[CLIPModel, TrainHistory]:
    """Train `model` on (images[i], texts[i]); return the model at the best `select` score (higher = better).

    Batches are drawn without replacement within a pass over the data; `weights` (optional, per pair)
    instead draws pairs in proportion to their weight (how a mix sets its synthetic share). With
    `ranks.world` > 1 (an initialised process group) each step is a DDP step on a slice of the batch.
    """
    ranks = ranks or Ranks()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    max_length = text_max_length(model, tokenizer)
    # the whole reports, tokenized once; or each report's sentences, sampled and tokenized batch by batch
    sentences = None if cfg.sentence_keep is None else [split_sentences(t) or [t] for t in texts]
    tokens = tokenize(tokenizer, texts, max_length) if sentences is None else None
    n = len(texts)
    batch = min(cfg.batch_size, n)
    distributed = ranks.world > 1
    if distributed and batch % ranks.world:
        raise ParamError("train.batch_size", f"the global batch ({batch}) must divide by the {ranks.world} processes")
    shard = slice(ranks.rank * batch // ranks.world, (ranks.rank + 1) * batch // ranks.world)
    device = stage_device(ranks)
    model.to(device)
    # DDP over NCCL (a GPU) needs the model on this rank's GPU; over gloo (CPU) no device ids
    forward = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
               if distributed else model)
    scaler = grad_scaler(device)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total = cfg.budget(n)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) *
                                              0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history = TrainHistory()
    best_state = copy.deepcopy(model.state_dict())
    order, pos, losses = torch.empty(0, dtype=torch.long), 0, []
    with tqdm(total=total, desc="contrastive", unit="step", disable=None if ranks.is_main else True) as bar:
        for step in range(1, total + 1):
            if pos + batch > len(order):  # a new pass over the data
                order = (torch.randperm(n, generator=gen) if weights is None
                         else torch.multinomial(weights, n, replacement=True, generator=gen))
                pos = 0
            idx = order[pos:pos + batch]
            pos += batch
            model.train()
            # Every rank draws the whole batch (the generator stays in step) and keeps its slice.
            pixels = random_shift(preprocess(images[idx]), cfg.shift, gen)[shard]
            if sentences is None:
                idx = idx[shard]
                ids, mask = tokens["input_ids"][idx], tokens["attention_mask"][idx]
            else:
                drawn = [sample_sentences(sentences[i], cfg.sentence_keep, gen) for i in idx.tolist()][shard]
                batch_tokens = tokenize(tokenizer, drawn, max_length)
                ids, mask = batch_tokens["input_ids"], batch_tokens["attention_mask"]
            loss = clip_loss(forward, pixels, ids, mask, distributed)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            with torch.no_grad():  # CLIP clamps the temperature at 100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            bar.update(1)
            if step % cfg.select_every == 0 or step == total:
                model.eval()
                with torch.inference_mode():
                    score = float(select(model))
                train_loss = sum(losses) / len(losses)
                losses = []
                history.steps.append(step)
                history.train_loss.append(train_loss)
                history.valid_score.append(score)
                if score > history.best_score:
                    history.best_score, history.best_step = score, step
                    best_state = copy.deepcopy(model.state_dict())
                bar.set_postfix(loss=f"{train_loss:.3f}", valid=f"{score:.3f}")
                if on_eval:
                    on_eval(step, train_loss, score)
    model.load_state_dict(best_state)
    model.eval()
    return model, history
