"""Augmentation mixes (`pretrain.mixes`): each names the branches added to the real train pairs.

Synthetic branches come from pruning (paraphrase, image_only, inter, intra). Two control branches hold
real pairs: `real_dup` repeats the target's real train pairs up to the number of synthetic pairs that
`pairaug` adds (the count-matched control synthetic pairs must beat), and `pool_real` adds the public
pool's real train pairs (a reference: what the public data itself would give, not a baseline).

`validate` writes one manifest per mix and `pretrain` trains on it; both read the mixes from here, so
`validate` does not depend on training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pairaug.errors import ParamError
from pairaug.hashing import stable_hash
from pairaug.params import Params, from_dict

SYNTHETIC_BRANCHES = ("paraphrase", "image_only", "inter", "intra")
CONTROL_BRANCHES = ("real_dup", "pool_real")
BRANCHES = (*SYNTHETIC_BRANCHES, *CONTROL_BRANCHES)
REAL_DUP_MATCHES = "pairaug"  # real_dup holds as many pairs as this mix's synthetic pairs


def default_mixes() -> dict[str, list[str]]:
    return {"none": [], "real_dup": ["real_dup"], "text_only": ["paraphrase"], "image_only": ["image_only"],
            "inter": ["inter"], "intra": ["intra"], "pairaug": ["inter", "intra"], "pool_real": ["pool_real"]}


def check_mixes(mixes: dict[str, list[str]], key: str) -> None:
    for mix, branches in mixes.items():
        for b in branches:
            if b not in BRANCHES:
                raise ParamError(f"{key}.{mix}", f"unknown branch {b!r} (known: {', '.join(BRANCHES)})")
        if "real_dup" in branches and REAL_DUP_MATCHES not in mixes:
            raise ParamError(f"{key}.{mix}", f"real_dup is count-matched to the mix {REAL_DUP_MATCHES!r}, "
                             "which pretrain.mixes does not define")


def real_dup_pairs(real_train: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` rows cycling through the real train pairs, each cycle in its own fixed shuffled order
    (a hash of pair id and cycle): every pair repeats ⌊count / n⌋ or ⌈count / n⌉ times."""
    ids = sorted(real_train["pair_id"])
    rows = []
    for cycle in range(-(-count // len(ids)) if ids else 0):
        order = sorted(ids, key=lambda pid: stable_hash("real_dup", pid, cycle))
        rows += [(pid, cycle) for pid in order]
    rows = rows[:count]
    by_id = real_train.set_index("pair_id")
    return pd.DataFrame({"pair_id": [stable_hash("real_dup", pid, c) for pid, c in rows], "branch": "real_dup",
                         "source_pair_id": [pid for pid, _ in rows],
                         "report": [by_id.at[pid, "report"] for pid, _ in rows],
                         "image": [by_id.at[pid, "image"] for pid, _ in rows]})


def pool_real_pairs(pool_train: pd.DataFrame) -> pd.DataFrame:
    """The public pool's real train pairs as a branch."""
    return pd.DataFrame({"pair_id": pool_train["pair_id"].to_numpy(), "branch": "pool_real",
                         "source_pair_id": pool_train["pair_id"].to_numpy(), "report": pool_train["report"].to_numpy(),
                         "image": pool_train["image"].to_numpy()})


@dataclass
class _MixesOnly(Params):
    mixes: dict[str, list[str]] = field(default_factory=default_mixes)

    def rules(self) -> None:
        check_mixes(self.mixes, "mixes")


def read_mixes(params: dict[str, Any]) -> dict[str, list[str]]:
    """`pretrain.mixes` of a params mapping, checked; the other pretrain keys are not read."""
    pretrain = params.get("pretrain") or {}
    return from_dict(_MixesOnly, {"mixes": pretrain["mixes"]} if "mixes" in pretrain else {}, "pretrain").mixes
