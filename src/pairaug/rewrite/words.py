"""Word limits: a report's length in words, and an LLM answer cut at a sentence end to `max_words`."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_LIST_NUMBER = re.compile(r"^\d{1,2}[.)]$")  # "2.": a list item's number, not the end of a sentence
_HEADER_WORD = re.compile(r"^[A-Z][A-Z ]*:$")


def count_words(text: str) -> int:
    return len(text.split())


def limit_words(text: str, max_words: int) -> tuple[str, bool]:
    """`text` cut to at most `max_words` words at the last sentence end (else mid-sentence); cut or not."""
    words = text.split()
    if len(words) <= max_words:
        return text, False
    ends = [i + 1 for i, w in enumerate(words[:max_words]) if _SENTENCE_END.search(w) and not _LIST_NUMBER.match(w)]
    kept = words[: ends[-1]] if ends else words[:max_words]
    # Never end on a list number or a section header whose item or text was cut ("IMPRESSION: 2.").
    while kept and (_LIST_NUMBER.match(kept[-1]) or _HEADER_WORD.match(kept[-1])):
        kept.pop()
    if ends and kept:
        return " ".join(kept), True
    return " ".join(kept).rstrip(",;:") + ".", True
