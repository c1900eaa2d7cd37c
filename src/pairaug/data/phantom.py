"""The phantom: a procedural chest X-ray dataset with known findings and matching free-text reports.

It is the embedded default data source and the project's test bench. Each patient has their own
anatomy (size, position, rotation, exposure, noise) and one or more studies; each study has findings
drawn with realistic prevalence and co-occurrence (a heart-failure factor links cardiomegaly, edema
and effusion; an infection factor drives consolidation). Findings are drawn large enough to stay
visible at 32 px. Everything is a pure function of (seed, split, patient index), so the test split
stays fixed when the train size changes, and a rerun gives the same bytes.

Image convention: frontal PA view, the patient's right on the image's left.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from pairaug.data.report_text import Finding, write_report
from pairaug.data.schema import LABELS
from pairaug.hashing import seed_from

FINDINGS: tuple[str, ...] = ("Cardiomegaly", "Pleural Effusion", "Consolidation", "Edema", "Atelectasis", "Pneumothorax")
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "large")
SIDES: tuple[str, ...] = ("right", "left")
LOBES: tuple[str, ...] = ("upper", "middle", "lower")


@dataclass(frozen=True)
class Anatomy:
    """One patient's body: fixed across their studies."""

    scale: float
    dx: float
    dy: float
    rotation: float  # degrees
    exposure: float  # overall brightness offset
    contrast: float
    noise: float
    heart_ctr: float  # cardiothoracic ratio when the heart is normal
    lung_height: float


@dataclass
class Study:
    patient_id: str
    study_id: str
    split: str
    anatomy: Anatomy
    findings: list[Finding] = field(default_factory=list)
    report: str = ""
    seed: int = 0

    def labels(self) -> dict[str, int | None]:
        """Ground truth: 1/0 for the six drawn findings and No Finding; other labels not mentioned."""
        present = {f.name for f in self.findings}
        out: dict[str, int | None] = dict.fromkeys(LABELS)
        for name in FINDINGS:
            out[name] = int(name in present)
        out["No Finding"] = int(not present)
        return out


# ---------------------------------------------------------------- sampling


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        scale=float(rng.uniform(0.9, 1.06)),
        dx=float(rng.uniform(-0.05, 0.05)),
        dy=float(rng.uniform(-0.04, 0.04)),
        rotation=float(rng.uniform(-5, 5)),
        exposure=float(rng.uniform(-0.06, 0.06)),
        contrast=float(rng.uniform(0.85, 1.15)),
        noise=float(rng.uniform(0.01, 0.035)),
        heart_ctr=float(rng.uniform(0.38, 0.46)),
        lung_height=float(rng.uniform(0.92, 1.06)),
    )


def shifted(a: Anatomy, shift: float) -> Anatomy:
    """The same body acquired elsewhere: brighter, flatter and noisier films as `shift` grows."""
    if shift == 0:
        return a
    return replace(a, exposure=a.exposure + 0.05 * shift, contrast=a.contrast * (1 - 0.15 * shift),
                   noise=a.noise * (1 + 0.8 * shift))


def _severity(rng: np.random.Generator, p=(0.4, 0.4, 0.2)) -> str:
    return str(rng.choice(SEVERITIES, p=p))


def sample_findings(rng: np.random.Generator, heart_failure: bool, chronic_cardiomegaly: str | None) -> list[Finding]:
    """Findings of one study, with co-occurrence through a heart-failure and an infection factor."""
    out: list[Finding] = []
    if chronic_cardiomegaly:
        out.append(Finding("Cardiomegaly", chronic_cardiomegaly))
    infection = rng.random() < 0.14
    effusion_p = 0.55 if heart_failure else (0.3 if infection else 0.08)
    if rng.random() < effusion_p:
        side = "bilateral" if heart_failure and rng.random() < 0.5 else str(rng.choice(SIDES))
        out.append(Finding("Pleural Effusion", _severity(rng), side))
    if infection and rng.random() < 0.9 or rng.random() < 0.02:
        side = str(rng.choice(SIDES))
        lobe = str(rng.choice(LOBES if side == "right" else ("upper", "lower")))
        out.append(Finding("Consolidation", _severity(rng), side, lobe))
    if rng.random() < (0.5 if heart_failure else 0.04):
        out.append(Finding("Edema", _severity(rng), "bilateral"))
    has_effusion = any(f.name == "Pleural Effusion" for f in out)
    if rng.random() < (0.3 if has_effusion else 0.14):
        out.append(Finding("Atelectasis", _severity(rng, (0.5, 0.4, 0.1)), str(rng.choice(SIDES)), "lower"))
    if rng.random() < 0.06:
        out.append(Finding("Pneumothorax", _severity(rng, (0.45, 0.35, 0.2)), str(rng.choice(SIDES))))
    # Mild findings are sometimes reported with hedging, as radiologists do.
    return [
        Finding(f.name, f.severity, f.side, f.lobe, hedged=f.severity == "mild" and rng.random() < 0.3) for f in out
    ]


def iter_studies(seed: int, split: str, n_patients: int, max_studies: int = 3, population: str = "target",
                 acquisition_shift: float = 0.0) -> Iterator[Study]:
    """All studies of `n_patients` phantom patients of one split, in a fixed order.

    `population` names a group of patients: the target ("ph-<split>-<i>") or another population such as
    the public pool ("ph-pool-<split>-<i>"), whose patients share no id, and so no random stream, with
    the target's. `acquisition_shift` (0 = none, 1 = strong) moves exposure, contrast and noise the way
    another hospital's scanners would; the findings and reports are unchanged by it.
    """
    prefix = "ph" if population == "target" else f"ph-{population}"
    for i in range(n_patients):
        patient_id = f"{prefix}-{split}-{i:05d}"
        rng = np.random.default_rng(seed_from("phantom", seed, patient_id))
        anatomy = shifted(sample_anatomy(rng), acquisition_shift)
        heart_failure = rng.random() < 0.2
        cardiomegaly_p = 0.75 if heart_failure else 0.1
        chronic = _severity(rng) if rng.random() < cardiomegaly_p else None
        n_studies = int(rng.choice(np.arange(1, max_studies + 1), p=_study_count_p(max_studies)))
        for s in range(n_studies):
            study_rng = np.random.default_rng(seed_from("phantom-study", seed, patient_id, s))
            findings = sample_findings(study_rng, heart_failure, chronic)
            study = Study(patient_id, f"{patient_id}-s{s}", split, anatomy, findings, seed=seed_from(seed, patient_id, s))
            study.report = write_report(findings, study_rng)
            yield study


def _study_count_p(max_studies: int) -> np.ndarray:
    p = np.array([0.6 * (0.55**k) for k in range(max_studies)])
    return p / p.sum()


# ---------------------------------------------------------------- rendering


def render(study: Study, size: int, supersample: int = 4) -> np.ndarray:
    """Draw the study's radiograph as a `size`×`size` uint8 array."""
    a = study.anatomy
    n = size * supersample
    lin = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    # Patient pose: rotate and shift the coordinate frame, then draw in body coordinates.
    th = math.radians(a.rotation)
    x = (math.cos(th) * (xx - a.dx) + math.sin(th) * (yy - a.dy)) / a.scale
    y = (-math.sin(th) * (xx - a.dx) + math.cos(th) * (yy - a.dy)) / a.scale
    rng = np.random.default_rng(study.seed)
    texture = _smooth_noise(rng, n, 6) * 0.5 + _smooth_noise(rng, n, 14) * 0.5
    find = {f.name: f for f in study.findings}

    img = np.full((n, n), 0.06)
    body = _ellipse(x, y, 0, 0.1, 0.95, 1.15)
    img = np.where(body, 0.5, img)
    # Lungs: dark fields with faint vessel markings; atelectasis elevates that hemidiaphragm (volume loss).
    lung_h = 0.62 * a.lung_height
    lungs = np.zeros_like(img, dtype=bool)
    lung_masks = {}
    for side, cx in (("right", -0.42), ("left", 0.42)):
        top, bottom = -0.72, -0.72 + 2 * lung_h
        atel = find.get("Atelectasis")
        if atel is not None and atel.side == side:
            bottom -= {"mild": 0.07, "moderate": 0.12, "large": 0.18}[atel.severity]
        m = _lung(x, y, cx, top, bottom, side)
        lung_masks[side] = (m, cx, top, bottom)
        lungs |= m
    img = np.where(lungs, 0.16 + 0.07 * texture, img)
    # Mediastinum, spine, clavicles.
    img = np.where((np.abs(x) < 0.15) & (y > -0.9) & (y < 0.55), np.maximum(img, 0.62), img)
    img = np.where((np.abs(x) < 0.07) & body, np.maximum(img, 0.68), img)
    for sgn in (-1, 1):
        clav = np.abs(y - (-0.72 + 0.08 * (sgn * x) + 0.15 * (sgn * x - 0.4) ** 2)) < 0.035
        img = np.where(clav & (sgn * x > 0.08) & (sgn * x < 0.8), np.maximum(img, 0.72), img)
    # Ribs: faint arcs across the lungs.
    for k in range(6):
        arc = np.abs(y - (-0.6 + k * 0.22 - 0.18 * (1 - np.abs(x)) ** 2)) < 0.022
        img = np.where(arc & lungs, img + 0.06, img)
    # Heart: an ellipse at the lower mediastinum, shifted to the patient's left (image right).
    cm = find.get("Cardiomegaly")
    ctr = a.heart_ctr if cm is None else {"mild": 0.56, "moderate": 0.63, "large": 0.70}[cm.severity]
    half_w = ctr * 0.9  # thorax half-width is about 0.9
    heart_cy = 0.2 + 0.05 * (ctr - 0.42)
    heart = _ellipse(x, y, 0.1 + 0.15 * (ctr - 0.42), heart_cy, half_w, 0.3 + 0.35 * (ctr - 0.42))
    img = np.where(heart & (y < 0.55), 0.74, img)
    # Diaphragm and abdomen below the lungs.
    below = (y > 0.5 + 0.08 * np.cos(x * 2.2)) & body & ~lungs & ~heart
    img = np.where(below, np.maximum(img, 0.6), img)
    fields = lungs & ~heart  # where lung findings can show
    img = _draw_findings(img, x, y, texture, find, lung_masks, heart, fields)

    img = (img - 0.4) * a.contrast + 0.4 + a.exposure
    small = img.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    small = small + rng.normal(0, a.noise, small.shape)
    return np.clip(np.round(small * 255), 0, 255).astype(np.uint8)


def _draw_findings(img: np.ndarray, x: np.ndarray, y: np.ndarray, texture: np.ndarray, find: dict,
                   lung_masks: dict, heart: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """The findings drawn over the anatomy: edema, consolidation, atelectasis, effusion, pneumothorax."""
    if (f := find.get("Edema")) is not None:
        amp = {"mild": 0.22, "moderate": 0.33, "large": 0.45}[f.severity]
        for cx in (-0.3, 0.3):
            haze = np.exp(-(((x - cx) / 0.28) ** 2 + ((y + 0.05) / 0.38) ** 2))
            img = np.where(fields, img + amp * haze * (0.8 + 0.4 * texture), img)
    if (f := find.get("Consolidation")) is not None:
        m, cx, top, bottom = lung_masks[f.side or "right"]
        cy = top + {"upper": 0.28, "middle": 0.5, "lower": 0.68}[f.lobe or "lower"] * (bottom - top)
        cx = cx + (0.08 if cx > 0 else -0.08)  # lateral, clear of the heart border
        r = {"mild": 0.16, "moderate": 0.21, "large": 0.27}[f.severity]
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / r**2) ** 2)
        img = np.where(m & ~heart, np.maximum(img, 0.16 + 0.55 * blob * (0.85 + 0.3 * texture)), img)
    if (f := find.get("Atelectasis")) is not None:
        m, cx, top, bottom = lung_masks[f.side or "right"]
        band_y = bottom - 0.3 + 0.15 * (x - cx)
        band = np.abs(y - band_y) < {"mild": 0.045, "moderate": 0.06, "large": 0.08}[f.severity]
        band &= np.abs(x - cx) < 0.32
        img = np.where(band & m & ~heart, 0.68, img)
    if (f := find.get("Pleural Effusion")) is not None:
        sides = ("right", "left") if f.side == "bilateral" else (f.side or "right",)
        height = {"mild": 0.2, "moderate": 0.36, "large": 0.56}[f.severity]
        for side in sides:
            m, cx, top, bottom = lung_masks[side]
            lateral = np.clip(np.abs(x) - np.abs(cx) + 0.3, 0, None)  # meniscus rises toward the chest wall
            surface = bottom - height - 0.6 * lateral**2
            fluid = m & (y > surface)
            img = np.where(fluid, 0.7 + 0.05 * texture, img)
    if (f := find.get("Pneumothorax")) is not None:
        m, cx, top, bottom = lung_masks[f.side or "right"]
        depth = {"mild": 0.3, "moderate": 0.45, "large": 0.65}[f.severity]
        sgn = 1 if cx > 0 else -1
        # Apical air between the chest wall and the collapsed lung's edge (the visceral pleural line).
        edge = np.hypot((x - cx) / 0.3, (y - top + 0.05) / depth)
        air = m & (edge > 1.0) & (y < top + depth) | m & (y < top + depth * 0.9) & (sgn * (x - cx) > 0.12)
        line = m & (np.abs(edge - 1.0) < 0.08) & (y < top + depth)
        img = np.where(air, 0.02, img)
        img = np.where(line, 0.6, img)
    return img


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _lung(x, y, cx, top, bottom, side):
    """A lung field: rounded apex, flat-ish base, narrower medially."""
    cy = (top + bottom) / 2
    ry = (bottom - top) / 2
    shape = ((x - cx) / 0.34) ** 2 + ((y - cy) / ry) ** 4 <= 1
    medial = (x > -0.12) if side == "right" else (x < 0.12)
    return shape & ~medial


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, n, endpoint=False)
    i = t.astype(int)
    f = t - i
    g = grid[i][:, i] * np.outer(1 - f, 1 - f) + grid[i + 1][:, i] * np.outer(f, 1 - f)
    g += grid[i][:, i + 1] * np.outer(1 - f, f) + grid[i + 1][:, i + 1] * np.outer(f, f)
    return g
