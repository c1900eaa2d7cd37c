"""generate's parameters: `generate` (inter and image_only sampling) and `intra` (with its `sweep` grid and
`check` sample sizes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch

from pairaug.errors import ParamError
from pairaug.hashing import stable_hash
from pairaug.params import in_range, positive


@dataclass
class SamplingConfig:
    steps: int = 20
    guidance: float = 3.5
    resolution: int | None = None  # null: the generator's native size (RoentGen: 512)
    batch_size: int = 64
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def validate(self, prefix: str) -> None:
        positive(prefix, steps=self.steps, guidance=self.guidance, batch_size=self.batch_size)
        if self.resolution is not None:
            positive(prefix, resolution=self.resolution)


@dataclass
class IntraCheck:
    """What metrics/intra.json measures beyond the generated pairs themselves."""

    psnr_pairs: int = 64  # pairs inverted and redrawn with y (no edit) for the reconstruction PSNR
    reference_pairs: int = 256  # intra reports also drawn from fresh noise: the "unrelated image" reference

    def validate(self, prefix: str) -> None:
        positive(prefix, psnr_pairs=self.psnr_pairs, reference_pairs=self.reference_pairs)


@dataclass
class IntraSweep:
    """intra-sweep's grid (generate/intra_sweep.py): the settings tried on the valid split for every one
    of `intra.guidance`, `intra.eta`, `intra.self_eta` left null."""

    guidance: list[float] = field(default_factory=lambda: [3.5, 7.5])
    eta: list[float] = field(default_factory=lambda: [0.2, 0.5])
    self_eta: list[float] = field(default_factory=lambda: [0.0, 0.2])
    min_patient_cos: float = 0.65  # the least mean cos(f(x'), f(x)) a chosen setting keeps

    def validate(self, prefix: str) -> None:
        for name in ("guidance", "eta", "self_eta"):
            values = getattr(self, name)
            if not values:
                raise ParamError(f"{prefix}.{name}", "must list at least one value")
            for v in values:
                if name == "guidance":
                    positive(prefix, guidance=v)
                else:
                    in_range(prefix, name, v, 0.0, 1.0)
        in_range(prefix, "min_patient_cos", self.min_patient_cos, -1.0, 1.0)


INVERSIONS = ("negative_prompt", "null_text", "ddim")


@dataclass
class IntraConfig:
    steps: int = 15
    # null: chosen on the valid split by intra-sweep (its grid: `sweep`); a number fixes the setting
    guidance: float | None = None
    eta: float | None = None  # cross-attention of the edit branch swapped for the source's while step < eta * steps
    self_eta: float | None = None  # self-attention swapped while step < self_eta * steps ...
    self_max_positions: int = 64  # ... in layers with at most this many query positions
    reweight: float = 2.0  # the edit branch's cross-attention to the tokens y' adds, times this
    blend_threshold: float | None = None  # local blend (p2p): the mask's cut; null: no local blend
    blend_start: float = 0.2  # local blend from this share of the steps on
    init: Literal["noise", "inversion"] = "inversion"
    inversion: Literal["negative_prompt", "null_text", "ddim"] = "negative_prompt"
    inversion_refine: int = 1  # fixed-point refinements per inversion step (0: plain DDIM inversion)
    null_text_steps: int = 2  # inversion null_text: Adam steps per sampling step
    null_text_lr: float = 0.05
    resolution: int | None = None  # null: the generator's native size; images are stored at data.image_size
    batch_size: int = 32  # pairs per chunk (one UNet batch of 4 x batch_size rows); also the unit of resume
    candidates: int = 2  # edits per report; prune keeps the best that pass S1-S3 (PairAug's code: 10)
    candidate_noise: float = 0.3  # init inversion: share of fresh noise in the start of candidates k > 0
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    sweep: IntraSweep = field(default_factory=IntraSweep)
    check: IntraCheck = field(default_factory=IntraCheck)

    def validate(self, prefix: str) -> None:
        positive(prefix, steps=self.steps, batch_size=self.batch_size, reweight=self.reweight,
                 self_max_positions=self.self_max_positions, candidates=self.candidates,
                 null_text_steps=self.null_text_steps, null_text_lr=self.null_text_lr)
        if self.guidance is not None:
            positive(prefix, guidance=self.guidance)
        for name in ("eta", "self_eta"):
            if getattr(self, name) is not None:
                in_range(prefix, name, getattr(self, name), 0.0, 1.0)
        if self.blend_threshold is not None:
            in_range(prefix, "blend_threshold", self.blend_threshold, 0.0, 1.0)
        in_range(prefix, "blend_start", self.blend_start, 0.0, 1.0)
        in_range(prefix, "candidate_noise", self.candidate_noise, 0.0, 1.0)
        in_range(prefix, "inversion_refine", self.inversion_refine, 0, 10)
        if self.inversion not in INVERSIONS:
            raise ParamError(f"{prefix}.inversion", f"must be one of {', '.join(INVERSIONS)}, got {self.inversion!r}")
        if self.resolution is not None:
            positive(prefix, resolution=self.resolution)
        self.sweep.validate(f"{prefix}.sweep")

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
