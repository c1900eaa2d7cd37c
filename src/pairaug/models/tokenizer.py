"""The embedded default's tokenizer: a WordPiece vocabulary learned from the training reports.

Saved as a `PreTrainedTokenizerFast` folder, so it loads with `AutoTokenizer.from_pretrained` exactly
like a user's checkpoint tokenizer. Special ids: [PAD]=0, [UNK]=1, [BOS]=2, [EOS]=3. The EOS id must
not be 2: transformers' CLIP text model treats `eos_token_id == 2` as a legacy config and would pool
the highest token id instead of the EOS position.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, max_length: int = 64) -> PreTrainedTokenizerFast:
    """Learn a lower-cased WordPiece vocabulary from `texts` (deterministic for the same texts)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=1,
                                        show_progress=False)
    tok.train_from_iterator(sorted(set(texts)), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", BOS_ID), ("[EOS]", EOS_ID)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]",
        model_max_length=max_length, padding_side="right", truncation_side="right")


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> None:
    tokenizer.save_pretrained(str(folder))
