"""The `pretrain@mix` stage's logic: CheXzero-style CLIP pretraining on real + a mix of synthetic pairs.

A mix names the synthetic branches it adds to the real train pairs (`pretrain.mixes`). One model per
replicate (`replicates`): replicate r trains on the real pairs and the mix's pairs of replicate r (its
own synthetic draw) from its own seed. Every mix trains by the same budget rule, passes over its pairs
(`pretrain.train.epochs`, with a floor and a cap), so a mix with more pairs gets more updates, as more
data would in practice. The checkpoint is selected on the valid split (zero-shot mean AUC over the
CheXpert competition labels), never on the test split.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from transformers import CLIPModel

from pairaug.data.mixes import check_mixes, default_mixes
from pairaug.data.schema import COMPETITION_LABELS, read_pairs
from pairaug.errors import InputError, ParamError
from pairaug.io import atomic_path, write_json, write_parquet
from pairaug.measurement.images import load_split_images
from pairaug.measurement.zeroshot import ZeroShotPrompts, auc_per_label, class_embeddings, zero_shot_probs
from pairaug.models.clip import (
    ClipArch,
    ImagePreprocessor,
    check_folder,
    embedded_config,
    features,
    load_clip,
    text_embeddings,
)
from pairaug.models.tokenizer import train_tokenizer
from pairaug.parallel import Ranks
from pairaug.params import Params, Share
from pairaug.train.contrastive import ContrastiveConfig, train_clip
from pairaug.train.scorer import valid_loss_fn

log = logging.getLogger(__name__)


class PretrainHooks(Protocol):
    """What the process that writes the outputs (rank 0) reports while it trains, e.g. to a live MLflow run
    (the stage script builds one from pairaug.tracking; this layer does not know MLflow).

    Hooks observe: they get plain Python numbers, must not touch torch's (or numpy's) random state nor the
    model, and must not raise (a logging failure is theirs to swallow), so the outputs are the same with
    or without them."""

    def seed_started(self, seed: int) -> None:
        """Replicate `seed` (an entry of `replicates`) is about to be initialised and trained."""

    def evaluated(self, seed: int, step: int, train_loss: float, valid_score: float) -> None:
        """A point of the training curve: the mean train loss since the last evaluation, the valid score."""

    def seed_finished(self, seed: int) -> None:
        """The seed's model is trained and its folder written (inside the stage's atomic output)."""


@dataclass
class PretrainConfig(Params):
    # mix name → the synthetic branches added to the real train pairs
    mixes: dict[str, list[str]] = field(default_factory=default_mixes)
    init_checkpoint: str | None = None  # an OpenAI CLIP folder (ViT-B/32); null: the embedded config
    vocab_size: int = 1000
    arch: ClipArch = field(default_factory=ClipArch)
    train: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    # Share of each batch drawn from synthetic pairs; null: real and synthetic pairs drawn alike.
    synthetic_share: Annotated[float, Share] | None = None
    select_by: Literal["zeroshot", "loss"] = "zeroshot"
    prompts: ZeroShotPrompts = field(default_factory=ZeroShotPrompts)

    def rules(self) -> None:
        check_mixes(self.mixes, "mixes")


def mix_pairs(mix: str, cfg: PretrainConfig, prepared: str | Path, validated: str | Path) -> pd.DataFrame:
    """Real train pairs + the mix's validated synthetic pairs (`validated`/mixes/<mix>.parquet, written by
    `validate`): (pair_id, branch, replicate, report, path); real pairs (replicate -1) train every replicate."""
    if mix not in cfg.mixes:
        raise ParamError("pretrain.mixes", f"no mix named {mix!r} (have: {', '.join(cfg.mixes)})")
    prepared, validated = Path(prepared), Path(validated)
    real = read_pairs(prepared)
    real = real[real["split"] == "train"]
    frames = [pd.DataFrame({"pair_id": real["pair_id"], "branch": "real", "replicate": -1, "report": real["report"],
                            "path": [str(prepared.parent / p) for p in real["image"]]})]
    branches = cfg.mixes[mix]
    if branches:
        manifest = validated / "mixes" / f"{mix}.parquet"
        if not manifest.exists():
            raise InputError(f"validated pairs of mix {mix!r} not found (run `dvc repro validate`)", file=manifest)
        syn = pd.read_parquet(manifest)
        if set(syn["branch"]) - set(branches):
            raise InputError(f"mix {mix!r} names branch(es) {branches} but its validated pairs hold "
                             f"{sorted(set(syn['branch']))} (rerun `dvc repro validate`)", file=manifest, field="branch")
        empty = sorted(set(branches) - set(syn["branch"]))
        if empty:  # pruning kept none of them: the mix trains on what is left (the report marks it)
            log.warning("mix %s: no pairs of branch(es) %s survived pruning", mix, ", ".join(empty))
        if "replicate" not in syn.columns:
            raise InputError(f"mix {mix!r}: missing column 'replicate' (rerun `dvc repro validate`)", file=manifest,
                             field="replicate")
        frames.append(pd.DataFrame({"pair_id": syn["pair_id"], "branch": syn["branch"],
                                    "replicate": syn["replicate"].astype("int64"), "report": syn["report"],
                                    "path": [os.path.normpath(validated / p) for p in syn["image"]]}))
    return pd.concat(frames, ignore_index=True)


def sampling_weights(branch: pd.Series, share: float | None) -> torch.Tensor | None:
    synthetic = (branch != "real").to_numpy()
    if share is None or not synthetic.any():
        return None
    w = np.where(synthetic, share / synthetic.sum(), (1 - share) / max(1, (~synthetic).sum()))
    return torch.tensor(w, dtype=torch.double)


def zeroshot_select(tokenizer, preprocess, images: torch.Tensor, targets: dict[str, np.ndarray],
                    prompts: ZeroShotPrompts, labels: list[str]):
    """Selection score: valid zero-shot mean AUC over the labels present in the valid split."""
    def score(model: CLIPModel) -> float:
        def encode_texts(texts: list[str]) -> np.ndarray:
            return text_embeddings(model, tokenizer, texts).numpy()

        img = features(model.get_image_features(pixel_values=preprocess(images).to(model.device)))
        img = torch.nn.functional.normalize(img.float(), dim=-1).cpu().numpy()
        pos, neg = class_embeddings(encode_texts, labels, prompts.positive, prompts.negative)
        aucs = [a for a in auc_per_label(zero_shot_probs(img, pos, neg), targets, labels).values() if a is not None]
        return float(np.mean(aucs)) if aucs else 0.0
    return score


def new_model(cfg: PretrainConfig, train_reports: list[str], image_size: int, images: torch.Tensor):
    """(model, tokenizer, preprocess): from init_checkpoint, or the embedded config from scratch."""
    if cfg.init_checkpoint:
        return load_clip(check_folder(cfg.init_checkpoint, "pretrain.init_checkpoint"))
    tokenizer = train_tokenizer(train_reports, cfg.vocab_size, cfg.arch.max_positions)
    model = CLIPModel(embedded_config(cfg.arch, len(tokenizer), image_size))
    x = images.float() / 255
    preprocess = ImagePreprocessor(image_size, cfg.arch.channels, (float(x.mean()),), (float(x.std()),))
    return model, tokenizer, preprocess


def pretrain_mix(mix: str, cfg: PretrainConfig, seed: int, prepared: str | Path, validated: str | Path,
                 out_dir: str | Path, ranks: Ranks | None = None, hooks: PretrainHooks | None = None,
                 replicates: Sequence[int] = (0,)) -> dict:
    """Train one model per replicate into out_dir/seed-<r>/ (r: the replicate seed); return a summary.

    Under several ranks (DDP, `cfg.train.batch_size` the global batch) every rank trains and rank 0
    alone writes out_dir and calls `hooks` (as each replicate starts, at each evaluation, as it ends).
    """
    ranks = ranks or Ranks()
    hooks = hooks if ranks.is_main else None
    pairs = mix_pairs(mix, cfg, prepared, validated)
    real = read_pairs(prepared)
    valid = real[real["split"] == "valid"]
    images = torch.from_numpy(np.stack([_load(p) for p in pairs["path"]]))
    valid_images = load_split_images(valid, Path(prepared).parent)
    labels = [lab for lab in COMPETITION_LABELS if (valid[lab] == 1).any()]
    targets = {lab: valid[lab].fillna(0).to_numpy() == 1 for lab in labels}
    is_real = (pairs["branch"] == "real").to_numpy()
    train_reports = pairs.loc[is_real, "report"].tolist()
    summary: dict = {"mix": mix, "branches": cfg.mixes[mix], "pairs": {}, "empty_branches": {}, "seeds": {}}
    real_images = images[torch.from_numpy(is_real)]
    with atomic_path(out_dir) if ranks.is_main else nullcontext() as tmp:
        if tmp is not None:
            tmp.mkdir(parents=True)
        for r in replicates:
            mine = is_real | (pairs["replicate"] == r).to_numpy()
            rows = pairs[mine]
            counts = rows["branch"].value_counts()
            summary["pairs"][str(r)] = {b: int(n) for b, n in counts.items()}
            summary["empty_branches"][str(r)] = sorted(set(cfg.mixes[mix]) - set(counts.index))
            if summary["empty_branches"][str(r)]:  # pruning kept none of them: the report marks the mix
                log.warning("mix %s, replicate %d: no pairs of branch(es) %s survived pruning", mix, r,
                            ", ".join(summary["empty_branches"][str(r)]))
            if hooks is not None:
                hooks.seed_started(r)
            run_seed = seed * 1000 + r
            torch.manual_seed(run_seed)
            # normalisation from the real train films alone: the same for every mix
            model, tokenizer, preprocess = new_model(cfg, train_reports, int(images.shape[-1]), real_images)
            if cfg.select_by == "zeroshot":
                select = zeroshot_select(tokenizer, preprocess, valid_images, targets, cfg.prompts, labels)
            else:
                select = valid_loss_fn(tokenizer, preprocess, valid_images, valid["report"].tolist())
            model, history = train_clip(model, tokenizer, preprocess, images[torch.from_numpy(mine)],
                                        rows["report"].tolist(), cfg.train, run_seed, select,
                                        weights=sampling_weights(rows["branch"], cfg.synthetic_share),
                                        on_eval=partial(hooks.evaluated, r) if hooks is not None else None, ranks=ranks)
            summary["seeds"][str(r)] = {"steps": cfg.train.budget(len(rows)), "best_step": history.best_step,
                                        "valid_score": history.best_score}
            if tmp is None:
                continue
            folder = tmp / f"seed-{r}"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            preprocess.save(folder)
            write_json(folder / "history.json", history.as_dict())
            if hooks is not None:
                hooks.seed_finished(r)
        if tmp is None:
            return summary
        # Exactly which pairs trained these models: the audit trail (pair ids, branches, replicate, image paths).
        used = pairs.assign(path=[str(Path(p)) for p in pairs["path"]])
        write_parquet(used, tmp / "training_pairs.parquet")
        (tmp / "mix.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _load(path: str) -> np.ndarray:
    from pairaug.data.images import load_gray

    return load_gray(path)
