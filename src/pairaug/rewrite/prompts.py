"""The three rewriting instructions, in one place, each with a version hash.

The InterAug and IntraAug texts are the PairAug paper's; the paraphrase instruction (for the text-only
baseline) follows their wording. `rewrite.prompts.<task>` in params.yaml replaces a text, or names a
prompt of MLflow's Prompt Registry (`prompts:/<name>@<alias>` or `prompts:/<name>/<version>`, loaded by
pairaug.rewrite.registry); the hash of the text actually used goes into every output row and every cache
key, so an edited prompt never reuses answers to the old one. The registry URI of the version used
goes beside it (null when tracking is off).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Task = Literal["inter", "intra", "paraphrase"]
TASKS: tuple[Task, ...] = ("inter", "intra", "paraphrase")

DEFAULT_PROMPTS: dict[str, str] = {
    "inter": (
        "Following is an original chest X-ray report. Generate one possible augmentation that is limited "
        "to 50 words while conveying partial opposite meanings than the original report."
    ),
    "intra": (
        "Following is an original chest X-ray report. Generate one reasonable augmentation that is limited "
        "to 50 words while conveying patient's changes in symptom than the original report."
    ),
    "paraphrase": (
        "Following is an original chest X-ray report. Generate one possible augmentation that is limited "
        "to 50 words while keeping the same meaning as the original report."
    ),
}


REGISTRY_SCHEME = "prompts:/"


def is_registry_uri(value: str | None) -> bool:
    """Whether a `rewrite.prompts.<task>` value names a registered prompt rather than giving the text."""
    return bool(value) and value.strip().startswith(REGISTRY_SCHEME)


@dataclass(frozen=True)
class Prompt:
    task: str
    text: str
    uri: str | None = None  # prompts:/<name>/<version> of this text in MLflow's Prompt Registry, when known

    @property
    def sha(self) -> str:
        """A short version hash of the instruction (task + text)."""
        return prompt_sha(self.task, self.text)


def prompt_sha(task: str, text: str) -> str:
    return hashlib.sha256(f"{task}\x1f{text}".encode()).hexdigest()[:12]


def get_prompt(task: str, overrides: dict[str, str | None] | None = None) -> Prompt:
    """The instruction for `task`: the override from params when set, else the default. A registry URI is
    returned as given (pairaug.rewrite.registry resolves it to its text)."""
    if task not in DEFAULT_PROMPTS:
        raise KeyError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    text = (overrides or {}).get(task) or DEFAULT_PROMPTS[task]
    return Prompt(task, text.strip())
