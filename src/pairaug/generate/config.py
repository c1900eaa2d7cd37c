"""generate's parameters: `generate` (inter and image_only sampling) and `intra` (with its `sweep` grid and
`check` sample sizes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
from annotated_types import Interval, MinLen

from pairaug.errors import ParamError
from pairaug.hashing import stable_hash
from pairaug.params import Cosine, Params, Positive, Share


@dataclass
class SamplingConfig(Params):
    steps: Annotated[int, Positive] = 20
    guidance: Annotated[float, Positive] = 3.5
    resolution: Annotated[int, Positive] | None = None  # null: the generator's native size (RoentGen: 512)
    batch_size: Annotated[int, Positive] = 64
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


@dataclass
class IntraCheck(Params):
    """What metrics/intra.json measures beyond the generated pairs themselves."""

    psnr_pairs: Annotated[int, Positive] = 64  # pairs inverted and redrawn with y (no edit) for the reconstruction PSNR
    # intra reports also drawn from fresh noise: the "unrelated image" reference
    reference_pairs: Annotated[int, Positive] = 256


@dataclass
class IntraSweep(Params):
    """intra-sweep's grid (generate/intra_sweep.py): the settings tried on the valid split for every one
    of `intra.guidance`, `intra.eta`, `intra.self_eta` left null."""

    guidance: Annotated[list[Annotated[float, Positive]], MinLen(1)] = field(default_factory=lambda: [3.5, 7.5])
    eta: Annotated[list[Annotated[float, Share]], MinLen(1)] = field(default_factory=lambda: [0.2, 0.5])
    self_eta: Annotated[list[Annotated[float, Share]], MinLen(1)] = field(default_factory=lambda: [0.0, 0.2])
    min_patient_cos: Annotated[float, Cosine] = 0.65  # the least mean cos(f(x'), f(x)) a chosen setting keeps


INVERSIONS = ("negative_prompt", "null_text", "ddim")


@dataclass
class IntraConfig(Params):
    steps: Annotated[int, Positive] = 15
    # null: chosen on the valid split by intra-sweep (its grid: `sweep`); a number fixes the setting
    guidance: Annotated[float, Positive] | None = None
    # cross-attention of the edit branch swapped for the source's while step < eta * steps
    eta: Annotated[float, Share] | None = None
    self_eta: Annotated[float, Share] | None = None  # self-attention swapped while step < self_eta * steps ...
    self_max_positions: Annotated[int, Positive] = 64  # ... in layers with at most this many query positions
    reweight: Annotated[float, Positive] = 2.0  # the edit branch's cross-attention to the tokens y' adds, times this
    # local blend (p2p): the mask's cut; null: no local blend
    blend_threshold: Annotated[float, Share] | None = None
    blend_start: Annotated[float, Share] = 0.2  # local blend from this share of the steps on
    init: Literal["noise", "inversion"] = "inversion"
    inversion: Literal["negative_prompt", "null_text", "ddim"] = "negative_prompt"
    # fixed-point refinements per inversion step (0: plain DDIM inversion)
    inversion_refine: Annotated[int, Interval(ge=0, le=10)] = 1
    null_text_steps: Annotated[int, Positive] = 2  # inversion null_text: Adam steps per sampling step
    null_text_lr: Annotated[float, Positive] = 0.05
    # null: the generator's native size; images are stored at data.image_size
    resolution: Annotated[int, Positive] | None = None
    # pairs per chunk (one UNet batch of 4 x batch_size rows); also the unit of resume
    batch_size: Annotated[int, Positive] = 32
    # edits per report; prune keeps the best that pass S1-S3 (PairAug's code: 10)
    candidates: Annotated[int, Positive] = 2
    # init inversion: share of fresh noise in the start of candidates k > 0
    candidate_noise: Annotated[float, Share] = 0.3
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    sweep: IntraSweep = field(default_factory=IntraSweep)
    check: IntraCheck = field(default_factory=IntraCheck)

    def resolved(self, chosen: dict) -> IntraConfig:
        """This config with the params left null set to intra-sweep's choice (`chosen`: guidance, eta, self_eta)."""
        return dataclasses.replace(self, **{k: chosen[k] if getattr(self, k) is None else getattr(self, k)
                                            for k in ("guidance", "eta", "self_eta")})

    def require_resolved(self) -> None:
        """Fail clearly when an edit setting is still null (not yet set from intra-sweep's choice)."""
        missing = [k for k in ("guidance", "eta", "self_eta") if getattr(self, k) is None]
        if missing:
            raise ParamError(f"intra.{missing[0]}", "is null: set it, or run intra-sweep and use its choice "
                                                    "(`dvc repro intra-sweep`; IntraConfig.resolved)")

    def fingerprint(self, dtype: torch.dtype) -> str:
        """Everything that shapes the images, with the dtype in use (float16 applies on GPU only): keys the
        resume folder. The metrics' sample sizes and the sweep's grid do not shape the images."""
        shaping = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("check", "dtype", "sweep")}
        return stable_hash(shaping, str(dtype))
