"""The embedded default's tokenizer: a WordPiece vocabulary learned from the training reports.

Saved as a `PreTrainedTokenizerFast` folder, so it loads with `AutoTokenizer.from_pretrained` exactly
like a user's checkpoint tokenizer. Special ids: [PAD]=0, [UNK]=1, [BOS]=2, [EOS]=3. The EOS id must
not be 2: transformers' CLIP text model treats `eos_token_id == 2` as a legacy config and would pool
the highest token id instead of the EOS position.

The vocabulary is built here rather than by `tokenizers`' WordPieceTrainer: that trainer numbers the
pieces in hash-map order, so two runs on the same reports gave different vocabularies (different ids,
even different pieces), hence a different scorer and generator on every `dvc repro`. Ours: every
character (word-initial and `##` continuation) plus the most frequent whole words, ordered by
(frequency, word); a word outside the vocabulary falls back to its characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, max_length: int = 64) -> PreTrainedTokenizerFast:
    """Learn a lower-cased WordPiece vocabulary from `texts`: the same set of texts, in any order, gives
    the same vocabulary (see the module docstring)."""
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in sorted(set(texts)):
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    pieces = SPECIAL + chars + [f"##{c}" for c in chars]
    known = set(pieces)
    words = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
    pieces += words[:max(0, vocab_size - len(pieces))]
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", BOS_ID), ("[EOS]", EOS_ID)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]",
        model_max_length=max_length, padding_side="right", truncation_side="right")


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | Path) -> None:
    tokenizer.save_pretrained(str(folder))
