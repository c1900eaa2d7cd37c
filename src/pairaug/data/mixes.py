"""Augmentation mixes (`pretrain.mixes`): each names the synthetic branches added to the real train pairs.

`validate` writes one manifest per mix and `pretrain` trains on it; both read the mixes from here, so
`validate` does not depend on training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pairaug.errors import ParamError
from pairaug.params import from_dict

BRANCHES = ("paraphrase", "image_only", "inter", "intra")


def default_mixes() -> dict[str, list[str]]:
    return {"none": [], "text_only": ["paraphrase"], "image_only": ["image_only"], "inter": ["inter"],
            "intra": ["intra"], "pairaug": ["inter", "intra"]}


def check_mixes(mixes: dict[str, list[str]], key: str) -> None:
    for mix, branches in mixes.items():
        for b in branches:
            if b not in BRANCHES:
                raise ParamError(f"{key}.{mix}", f"unknown branch {b!r} (known: {', '.join(BRANCHES)})")


@dataclass
class _MixesOnly:
    mixes: dict[str, list[str]] = field(default_factory=default_mixes)

    def validate(self, prefix: str) -> None:
        check_mixes(self.mixes, f"{prefix}.mixes")


def read_mixes(params: dict[str, Any]) -> dict[str, list[str]]:
    """`pretrain.mixes` of a params mapping, checked; the other pretrain keys are not read."""
    pretrain = params.get("pretrain") or {}
    return from_dict(_MixesOnly, {"mixes": pretrain["mixes"]} if "mixes" in pretrain else {}, "pretrain").mixes
