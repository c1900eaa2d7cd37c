"""Provenance inside every synthetic PNG: the generation writer puts it in PNG text chunks (byte-deterministic),
`pairaug inspect` reads it back from a copy anywhere, and `pairaug audit` reports an image whose chunks
disagree with its pair's row as modified."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pairaug.cli import main as cli
from pairaug.data.provenance import FIELDS, PREFIX, read_provenance, read_text_chunks
from pairaug.generate.store import ChunkStore
from pairaug.hashing import file_digest
from pairaug.io import save_png
from pairaug.tracking.audit import STATUS_OK, verify

REPORT = "FINDINGS: Small left pleural effusion. IMPRESSION: Left effusion."


def rows_and_images(pair_id: str = "0a1b2c3d4e5f6071") -> tuple[list[dict], dict[str, np.ndarray]]:
    """One IntraAug chunk as intra-generate hands it to the writer: the edit and its source-branch redraw."""
    rng = np.random.default_rng(0)
    row = {"pair_id": pair_id, "branch": "intra", "source_pair_id": "src0001", "report": REPORT,
           "image": f"images/{pair_id}.png", "seed": 1234, "generator_sha": "9f8e7d6c5b4a3921", "steps": 15,
           "guidance": 3.5, "eta": 0.5, "inversion": True, "candidate": 0, "source_image": f"source/{pair_id}.png"}
    images = {row["image"]: rng.integers(0, 256, (32, 32), dtype=np.uint8),
              row["source_image"]: rng.integers(0, 256, (32, 32), dtype=np.uint8)}
    return [row], images


def write_chunk(work: Path) -> tuple[Path, dict]:
    rows, images = rows_and_images()
    items = pd.DataFrame([{k: rows[0][k] for k in ("pair_id", "source_pair_id", "report", "seed")}])
    store = ChunkStore(work, items, batch_size=1)
    store.write(0, rows, images)
    return store.path(0), rows[0]


def test_the_writer_is_byte_deterministic_with_its_chunks(tmp_path):
    a, row = write_chunk(tmp_path / "a")
    b, _ = write_chunk(tmp_path / "b")
    for rel in (row["image"], row["source_image"]):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    # the rows record the hash of the file as written, chunks included
    rows = pd.read_parquet(a / "rows.parquet")
    assert rows.loc[0, "image_sha256"] == file_digest(a / row["image"])
    chunks = read_text_chunks(a / row["image"])
    assert list(chunks)[:len(FIELDS)] == [PREFIX + f for f in FIELDS]  # a fixed order: fixed bytes
    assert chunks["Software"].startswith("pairaug ")
    # the pixels are the pixels handed in: chunks change nothing else
    assert np.array_equal(np.asarray(Image.open(a / row["image"])), rows_and_images()[1][row["image"]])


def test_inspect_recovers_the_provenance_of_a_copy(tmp_path, capsys):
    folder, row = write_chunk(tmp_path / "w")
    elsewhere = tmp_path / "slides" / "figure-3.png"  # renamed, far from any manifest
    elsewhere.parent.mkdir()
    shutil.copy(folder / row["image"], elsewhere)
    assert cli(["inspect", str(elsewhere)]) == 0
    out = capsys.readouterr().out
    assert "synthetic image" in out
    fields = dict(line.split(None, 1) for line in out.splitlines()[1:])
    assert fields["pair_id"] == row["pair_id"] and fields["generator_sha"] == row["generator_sha"]
    assert fields["branch"] == "intra" and fields["role"] == "image" and fields["source_pair_id"] == "src0001"
    assert fields["seed"] == "1234" and fields["steps"] == "15" and fields["guidance"] == "3.5"
    assert fields["eta"] == "0.5" and fields["inversion"] == "true" and fields["synthetic"] == "true"
    assert fields["prompt_sha256"] == read_provenance(elsewhere)["prompt_sha256"] and len(fields["prompt_sha256"]) == 64
    source = read_provenance(folder / row["source_image"])
    assert source["role"] == "source_branch" and source["pair_id"] == row["pair_id"]


def test_inspect_of_a_real_film_and_of_bad_input(tmp_path, capsys):
    real = tmp_path / "real.png"
    save_png(np.zeros((16, 16), np.uint8), real)
    assert cli(["inspect", str(real), "--format", "json"]) == 0
    assert '"provenance": null' in capsys.readouterr().out
    assert cli(["inspect", str(real)]) == 0 and "no provenance" in capsys.readouterr().out
    jpeg = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(jpeg)
    for bad in (jpeg, tmp_path / "missing.png"):
        assert cli(["inspect", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and str(bad) in err and len(err.splitlines()) == 1


def _edit_chunk(path: Path, key: str, value: str) -> None:
    """Rewrite one text chunk, keeping the pixels and the other chunks."""
    chunks = read_text_chunks(path)
    chunks[PREFIX + key] = value
    pixels = np.asarray(Image.open(path))
    path.chmod(0o644)
    save_png(pixels, path, text=chunks)


@pytest.fixture
def trained_on(tmp_path) -> tuple[Path, pd.DataFrame]:
    """A workspace with one synthetic pair's image, and the audit rows the model was trained with."""
    folder, row = write_chunk(tmp_path / "w")
    root = tmp_path / "repo"
    image = root / "data" / "validated" / row["image"]
    image.parent.mkdir(parents=True)
    shutil.copy(folder / row["image"], image)
    pairs = pd.DataFrame([{"pair_id": row["pair_id"], "branch": "intra", "source_pair_id": "src0001",
                           "report": REPORT, "image": str(image.relative_to(root)),
                           "image_sha256": file_digest(image)}])
    return root, pairs


def test_audit_reports_an_edited_chunk_as_modified(trained_on):
    root, pairs = trained_on
    ok = verify(pairs, {}, root)
    assert ok.loc[0, "status"] == STATUS_OK and ok.loc[0, "provenance"] == "ok"
    image = root / pairs.loc[0, "image"]
    _edit_chunk(image, "pair_id", "ffffffffffffffff")
    out = verify(pairs, {}, root)
    assert out.loc[0, "status"] == "modified" and out.loc[0, "provenance"] == "differs: pair_id"
    # Even when the recorded hash is the tampered file's (a manifest rewritten around it), the chunks disagree.
    out = verify(pairs.assign(image_sha256=file_digest(image)), {}, root)
    assert out.loc[0, "workspace"] == "ok" and out.loc[0, "status"] == "modified"


def test_audit_reads_a_real_film_as_no_provenance(trained_on):
    root, pairs = trained_on
    real = root / "data" / "prepared" / "images" / "r.png"
    real.parent.mkdir(parents=True)
    save_png(np.zeros((16, 16), np.uint8), real)
    para = pd.DataFrame([{"pair_id": "p1", "branch": "paraphrase", "source_pair_id": "r", "report": REPORT,
                          "image": "data/prepared/images/r.png", "image_sha256": file_digest(real)}])
    out = verify(para, {}, root)
    assert out.loc[0, "status"] == STATUS_OK and out.loc[0, "provenance"] == "none"
