"""Text augmentation in contrastive training: each draw of a report keeps a random subset of its sentences
(`sentence_keep`), so the text tower also sees short texts like the zero-shot prompts."""

from __future__ import annotations

import torch
from transformers import CLIPModel

import pairaug.train.contrastive as contrastive
from pairaug.data.labeler import split_sentences
from pairaug.models.clip import ClipArch, ImagePreprocessor, embedded_config
from pairaug.models.tokenizer import train_tokenizer
from pairaug.train.contrastive import ContrastiveConfig, sample_sentences, train_clip

SENTENCES = ["Mild perihilar edema.", "The heart is enlarged.", "No pneumothorax.", "No pleural effusion."]
REPORTS = [
    "FINDINGS: Mild perihilar edema. The heart is enlarged. No pneumothorax. IMPRESSION: Mild edema.",
    "FINDINGS: Large left effusion. No edema. IMPRESSION: Left pleural effusion.",
    "FINDINGS: The lungs are clear. No pneumothorax. No pleural effusion. IMPRESSION: Normal chest.",
    "FINDINGS: Right apical pneumothorax. The heart is normal in size. IMPRESSION: Right pneumothorax.",
]


def test_a_draw_keeps_sentences_in_order_and_never_none():
    gen = torch.Generator().manual_seed(0)
    assert sample_sentences(SENTENCES, 1.0, gen) == " ".join(SENTENCES)
    draws = [sample_sentences(SENTENCES, 0.0, gen) for _ in range(20)]
    assert all(d in SENTENCES for d in draws)  # keep 0: exactly one sentence, never an empty text
    assert len(set(draws)) > 1
    for _ in range(50):
        draw = sample_sentences(SENTENCES, 0.5, gen)
        kept = [s for s in SENTENCES if s in draw]
        assert kept and draw == " ".join(kept)  # a subset, in the report's order


def test_each_sentence_is_kept_at_the_given_rate_and_draws_repeat_with_the_seed():
    def draws(seed: int) -> list[str]:
        gen = torch.Generator().manual_seed(seed)
        return [sample_sentences(SENTENCES, 0.3, gen) for _ in range(2000)]

    first = draws(1)
    assert first == draws(1) and first != draws(2)
    for s in SENTENCES:  # P(kept) = 0.3, plus the rescue of all-dropped draws (0.7^4 / 4 ≈ 0.06)
        assert 0.32 < sum(s in d for d in first) / len(first) < 0.40


def _train(cfg: ContrastiveConfig, monkeypatch) -> list[list[str]]:
    """The texts each tokenizer call saw while training a tiny CLIP on REPORTS."""
    seen: list[list[str]] = []
    real_tokenize = contrastive.tokenize

    def recording(tokenizer, texts, max_length):
        seen.append(list(texts))
        return real_tokenize(tokenizer, texts, max_length)

    monkeypatch.setattr(contrastive, "tokenize", recording)
    images = torch.randint(0, 256, (len(REPORTS), 16, 16), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    arch = ClipArch(projection_dim=8, text_hidden=8, text_mlp=16, text_layers=1, text_heads=2, max_positions=40,
                    vision_hidden=8, vision_mlp=16, vision_layers=1, vision_heads=2, patch_size=8, channels=1)
    tokenizer = train_tokenizer(REPORTS, 200, 40)
    torch.manual_seed(0)
    model = CLIPModel(embedded_config(arch, len(tokenizer), 16))
    train_clip(model, tokenizer, ImagePreprocessor(16, 1, (0.5,), (0.25,)), images, REPORTS, cfg, seed=0,
               select=lambda _m: 0.0)
    return seen


def test_training_sees_sentence_subsets_only_when_asked(monkeypatch):
    base = dict(steps=6, batch_size=4, warmup_steps=1, select_every=1000)
    assert _train(ContrastiveConfig(**base), monkeypatch) == [REPORTS]  # whole reports, tokenized once
    seen = _train(ContrastiveConfig(**base, sentence_keep=0.5), monkeypatch)
    assert len(seen) == 6 and all(len(batch) == 4 for batch in seen)  # one draw of each report per step
    sentences = {s for r in REPORTS for s in split_sentences(r)}
    texts = [t for batch in seen for t in batch]
    assert all(set(split_sentences(t)) <= sentences for t in texts)
    assert any(t not in REPORTS and len(split_sentences(t)) < 3 for t in texts)  # short texts, as the prompts
