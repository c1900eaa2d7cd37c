"""The `prepare` stage's logic: any source → `data/prepared/{pairs.parquet, images/}` + counts.

Images stream through a bounded process pool one chunk at a time (decode → pad to square → resize →
PNG), so memory stays flat on MIMIC-sized inputs. Labels come from the dataset where it has them,
else from the report labeler. Splits are by patient: the dataset's official split where it has one and
`split.official` is set, else a hash of the patient id (stable when the dataset grows). The same film
(by the hash of its decoded pixels) in two splits is refused: listed under two patient ids, it would
leak past the patient split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from annotated_types import Ge, MultipleOf
from tqdm import tqdm

from pairaug.data import adapters, phantom
from pairaug.data.adapters import SourceRecord
from pairaug.data.images import fit_square, load_film
from pairaug.data.labeler import label_report
from pairaug.data.schema import LABELS, SPLITS, pairs_frame, validate_pairs
from pairaug.errors import InputError, ParamError
from pairaug.hashing import stable_hash
from pairaug.io import atomic_path, save_png, write_json, write_parquet
from pairaug.parallel import process_pool
from pairaug.params import Params, Positive, Share, from_dict, merged

Source = Literal["phantom", "mimic", "chexpert", "openi", "nih", "csv"]


@dataclass
class PhantomConfig(Params):
    train_patients: Annotated[int, Positive] = 100
    valid_patients: int = 100
    test_patients: int = 800
    max_studies: Annotated[int, Positive] = 3
    population: str = "target"  # the public pool is another population: disjoint patients
    acquisition_shift: Annotated[float, Share] = 0.0  # 0 = the target's scanners; up to 1 = a strong shift

    def rules(self) -> None:
        if not self.population.replace("_", "").isalnum():
            raise ParamError("population", f"letters, digits and _ only, got {self.population!r}")


@dataclass
class CsvConfig(Params):
    path: str = ""
    image_column: str = "image"
    report_column: str = "report"
    patient_column: str | None = "patient_id"
    study_column: str | None = None
    view_column: str | None = "view"
    label_columns: list[str] = field(default_factory=list)
    image_root: str | None = None


@dataclass
class MimicConfig(Params):
    root: str = ""
    reports_root: str | None = None
    views: list[str] = field(default_factory=lambda: ["PA", "AP"])
    use_dataset_labels: bool = True


@dataclass
class OpenIConfig(Params):
    root: str = ""
    reports_csv: str = "indiana_reports.csv"
    projections_csv: str = "indiana_projections.csv"
    images_dir: str = "images/images_normalized"
    views: list[str] = field(default_factory=lambda: ["Frontal"])


@dataclass
class ChexpertConfig(Params):
    root: str = ""
    csv_files: list[str] = field(default_factory=lambda: ["train.csv", "valid.csv"])
    frontal_only: bool = True


@dataclass
class NihConfig(Params):
    root: str = ""
    entries_csv: str = "Data_Entry_2017.csv"
    images_dir: str = "images"


@dataclass
class SplitConfig(Params):
    train: Annotated[float, Share] = 0.8
    valid: Annotated[float, Share] = 0.1
    test: Annotated[float, Share] = 0.1
    official: bool = True  # use the dataset's own split where it has one (MIMIC, CheXpert valid)


@dataclass
class DataConfig(Params):
    source: Source = "phantom"
    image_size: Annotated[int, Ge(8), MultipleOf(8)] = 32
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    csv: CsvConfig = field(default_factory=CsvConfig)
    mimic: MimicConfig = field(default_factory=MimicConfig)
    openi: OpenIConfig = field(default_factory=OpenIConfig)
    chexpert: ChexpertConfig = field(default_factory=ChexpertConfig)
    nih: NihConfig = field(default_factory=NihConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    max_pairs: int | None = None  # keep only the first N records (quick trials on a big dataset)
    workers: Annotated[int, Positive] = 2
    chunk_size: Annotated[int, Positive] = 256

    def rules(self) -> None:
        total = self.split.train + self.split.valid + self.split.test
        if abs(total - 1.0) > 1e-6:
            raise ParamError("split", f"train + valid + test must be 1, got {total}")
        if self.source != "phantom":
            sub = getattr(self, self.source)
            key = "path" if self.source == "csv" else "root"
            if not getattr(sub, key):
                raise ParamError(f"{self.source}.{key}", f"required when data.source is {self.source!r}")


# The public pool's defaults (params `pool`): a disjoint population, much larger than the scarce target.
POOL_DEFAULTS: dict = {"phantom": {"train_patients": 2500, "valid_patients": 250, "test_patients": 0,
                                   "population": "pool"}}


def pool_config(params: dict) -> DataConfig:
    """The `pool` section: the public data the embedded scorer and generator learn from (the stand-ins for
    MedCLIP's and RoentGen's training sets); the VLP model never trains on it. Any `data` source works
    (e.g. a CSV of a public dataset); its images take the target's `data.image_size`."""
    raw = params.get("pool") or {}
    if "image_size" in raw:
        raise ParamError("pool.image_size", "the pool's images take data.image_size; remove this key")
    cfg = from_dict(DataConfig, merged(POOL_DEFAULTS, raw), "pool")
    cfg.image_size = from_dict(DataConfig, params.get("data") or {}, "data").image_size
    if cfg.source == "phantom" and cfg.phantom.population == "target":
        raise ParamError("pool.phantom.population", "must name another population than the target's")
    return cfg


def iter_records(cfg: DataConfig, seed: int) -> Iterator[SourceRecord | phantom.Study]:
    """The configured source as a stream of records (phantom: studies to render)."""
    if cfg.source == "phantom":
        p = cfg.phantom
        for split, n in (("train", p.train_patients), ("valid", p.valid_patients), ("test", p.test_patients)):
            yield from phantom.iter_studies(seed, split, n, p.max_studies, p.population, p.acquisition_shift)
        return
    if cfg.source == "csv":
        c = cfg.csv
        yield from adapters.iter_csv(c.path, image_column=c.image_column, report_column=c.report_column,
                                     patient_column=c.patient_column, study_column=c.study_column,
                                     view_column=c.view_column, label_columns=c.label_columns, image_root=c.image_root)
    elif cfg.source == "mimic":
        m = cfg.mimic
        yield from adapters.iter_mimic(m.root, views=m.views, use_dataset_labels=m.use_dataset_labels,
                                       reports_root=m.reports_root)
    elif cfg.source == "openi":
        o = cfg.openi
        yield from adapters.iter_openi(o.root, reports_csv=o.reports_csv, projections_csv=o.projections_csv,
                                       images_dir=o.images_dir, views=o.views)
    elif cfg.source == "chexpert":
        yield from adapters.iter_chexpert(cfg.chexpert.root, csv_files=cfg.chexpert.csv_files,
                                          frontal_only=cfg.chexpert.frontal_only)
    elif cfg.source == "nih":
        yield from adapters.iter_nih(cfg.nih.root, entries_csv=cfg.nih.entries_csv, images_dir=cfg.nih.images_dir)
    else:  # pragma: no cover - Literal validation rejects it first
        raise ParamError("data.source", f"unknown source {cfg.source!r}")


def hash_split(patient_id: str, seed: int, split: SplitConfig) -> str:
    u = int(stable_hash("split", seed, patient_id, length=12), 16) / float(16**12)
    if u < split.train:
        return "train"
    return "valid" if u < split.train + split.valid else "test"


def film_digest(gray: np.ndarray) -> str:
    """The content hash of a decoded film: equal pixels, equal digest, whatever the file's name or encoding."""
    return hashlib.sha256(f"{gray.shape}".encode() + gray.tobytes()).hexdigest()


def _image_task(task: tuple) -> tuple[str | None, str | None]:
    """Worker: make one image and write it as PNG; return (source film's digest or None, error or None)."""
    kind, payload, dest, size = task
    digest = None
    try:
        if kind == "phantom":
            pixels = phantom.render(payload, size)
        else:
            gray = load_film(payload)
            digest = film_digest(gray)
            pixels = fit_square(gray, size)
        save_png(pixels, dest)
    except InputError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is reported with the record's location
        return None, f"cannot process image {payload}: {type(e).__name__}: {e}"
    return digest, None


def prepare(cfg: DataConfig, seed: int, out_dir: str | Path, metrics_path: str | Path | None = None) -> pd.DataFrame:
    """Write `out_dir/pairs.parquet` and `out_dir/images/` atomically; return the pairs frame."""
    out_dir = Path(out_dir)
    rows: list[dict] = []
    origins: list[tuple] = []
    seen: dict[str, tuple] = {}
    films: dict[str, tuple] = {}  # film digest → (split, patient, origin) of the first row that had it
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        records = iter_records(cfg, seed)
        if cfg.max_pairs:
            records = islice(records, cfg.max_pairs)
        pool = process_pool(cfg.workers) if cfg.workers > 1 else None
        try:
            with tqdm(desc="prepare", unit="img", disable=None) as bar:
                while chunk := list(islice(records, cfg.chunk_size)):
                    tasks, chunk_rows = [], []
                    for rec in chunk:
                        row, task = _row_and_task(rec, cfg, seed, tmp, seen)
                        chunk_rows.append(row)
                        tasks.append(task)
                    results = pool.map(_image_task, tasks) if pool else map(_image_task, tasks)
                    for row, (digest, error) in zip(chunk_rows, results):
                        if error:
                            file, r, fld = row.pop("_origin")
                            raise InputError(error.rstrip(), file=file, row=r, field=fld)
                        if digest is not None:
                            first = films.setdefault(digest, (row["split"], row["patient_id"], row["_origin"]))
                            _check_film_split(first, row)
                        origins.append(row.pop("_origin"))
                        rows.append(row)
                    bar.update(len(chunk))
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        if not rows:
            raise InputError(f"data source {cfg.source!r} produced no pairs")
        df = pairs_frame(rows)
        try:
            validate_pairs(df, out_dir / "pairs.parquet", require_report=cfg.source not in adapters.LABEL_ONLY_SOURCES)
        except InputError as e:
            raise _at_source(e, origins) from None
        write_parquet(df, tmp / "pairs.parquet")
    if metrics_path:
        write_json(metrics_path, data_metrics(df, cfg))
    return df


def _at_source(e: InputError, origins: list[tuple]) -> InputError:
    """Re-point a manifest check's error at the source record that made the row.

    The manifest being checked lives in a temp folder that is deleted on failure, so naming it (and its
    row) would send the user nowhere; the source file and row are what they can fix.
    """
    if e.row is None or not 0 <= int(e.row) < len(origins) or origins[int(e.row)][0] == "phantom":
        return e
    where = str(InputError("", file=e.file, row=e.row, field=e.field))
    message = str(e)[: -len(where)] if where and str(e).endswith(where) else str(e)
    file, row, field = origins[int(e.row)]
    return InputError(f"{message} (checked in the manifest's '{e.field}' column)", file=file, row=row, field=field)


def _check_film_split(first: tuple, row: dict) -> None:
    """Refuse a film already seen in another split: one image under two patient ids leaks across the split."""
    split, patient, (first_file, first_row, _) = first
    if split == row["split"]:
        return
    file, r, fld = row["_origin"]
    where = f"row {first_row}" if first_file == file else f"{first_file} row {first_row}"
    raise InputError(f"same film (identical pixels) as {where} (patient {patient!r}, split {split}) but here under "
                     f"patient {row['patient_id']!r} in split {row['split']}: one film in two splits leaks across "
                     "them; remove one of the rows", file=file, row=r, field=fld)


def _row_and_task(rec, cfg: DataConfig, seed: int, tmp: Path, seen: dict) -> tuple[dict, tuple]:
    if isinstance(rec, phantom.Study):
        pair_id = stable_hash("phantom", seed, rec.study_id)
        labels, label_source, split, report, view = rec.labels(), "dataset", rec.split, rec.report, "PA"
        patient, study, origin, payload, kind = rec.patient_id, rec.study_id, ("phantom", None, None), rec, "phantom"
    else:
        # The path under the image root, not the base name: a/1.png and b/1.png in one study are two films.
        pair_id = stable_hash(cfg.source, rec.patient_id, rec.study_id, rec.image_rel)
        if rec.labels is not None:
            labels, label_source = rec.labels, "dataset"
        else:
            labels, label_source = label_report(rec.report or ""), "labeler"
        use_official = cfg.split.official and rec.split in SPLITS
        split = rec.split if use_official else hash_split(rec.patient_id, seed, cfg.split)
        report, view, patient, study = rec.report or "", rec.view, rec.patient_id, rec.study_id
        origin, payload, kind = rec.origin, rec.image, "file"
    if pair_id in seen:
        file, r, fld = origin
        raise InputError(f"duplicate pair: same patient, study and image as {seen[pair_id]}", file=file, row=r, field=fld)
    seen[pair_id] = f"row {origin[1]}" if origin[1] is not None else pair_id
    rel = f"images/{pair_id[:2]}/{pair_id}.png"
    row = {"pair_id": pair_id, "patient_id": patient, "study_id": study, "split": split, "image": rel,
           "report": report, "view": view, **{k: labels.get(k) for k in LABELS}, "label_source": label_source,
           "_origin": origin}
    return row, (kind, payload, str(tmp / rel), cfg.image_size)


def data_metrics(df: pd.DataFrame, cfg: DataConfig) -> dict:
    out: dict = {"source": cfg.source, "image_size": cfg.image_size, "pairs": int(len(df)),
                 "patients": int(df["patient_id"].nunique()), "splits": {}}
    for split in SPLITS:
        part = df[df["split"] == split]
        out["splits"][split] = {
            "pairs": int(len(part)), "patients": int(part["patient_id"].nunique()),
            "positive": {label: int((part[label] == 1).sum()) for label in LABELS if (df[label] == 1).any()},
        }
    return out
