"""Fresh generation (inter / image_only) on a tiny embedded generator: ids, determinism, the chunk store,
sharding over ranks, and bad params."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from pairaug.data.images import load_gray
from pairaug.data.schema import empty_labels, pairs_frame
from pairaug.errors import ParamError
from pairaug.generate.common import MANIFEST_COLUMNS, generator_sha, plan
from pairaug.generate.config import SamplingConfig
from pairaug.generate.run import generate_fresh
from pairaug.generate.store import ChunkStore, run_chunks
from pairaug.hashing import file_digest, seed_from
from pairaug.io import save_png
from pairaug.launch import generation_dtype
from pairaug.models.generator import TextToImagePipeline, UNetArch, embedded_unet, train_scheduler
from pairaug.models.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from pairaug.parallel import Ranks
from pairaug.params import section
from pairaug.train.generator import GeneratorConfig
from pairaug.train.scorer import ScorerConfig

REPO = Path(__file__).resolve().parents[1]
FINDINGS = ["moderate cardiomegaly", "small left pleural effusion", "right lower lobe consolidation",
            "mild pulmonary edema", "no acute process"]
N_OK = 20  # rewrites with status ok: chunks of 8, 8 and 4
CFG = SamplingConfig(steps=2, guidance=3.0, batch_size=8)


def report(i: int) -> str:
    return f"FINDINGS: {FINDINGS[i % 5].capitalize()}. Case {i}. IMPRESSION: {FINDINGS[(i + 2) % 5]}."


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """prepared pairs (12 train pairs, 32 px), an inter rewrite table, and a tiny saved generator."""
    root = tmp_path_factory.mktemp("gen-inputs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        save_png(rng.integers(0, 256, (32, 32), dtype=np.uint8), root / "prepared" / "images" / f"{i}.png")
        rows.append({"pair_id": f"p{i:02d}", "patient_id": f"pt{i:02d}", "study_id": f"s{i:02d}", "split": "train",
                     "image": f"images/{i}.png", "report": report(i), "view": "PA", **empty_labels(),
                     "label_source": "labeler"})
    pairs_frame(rows).to_parquet(root / "prepared" / "pairs.parquet")
    status = ["ok"] * N_OK + ["failed", "skipped_short"]
    (root / "rewritten").mkdir()
    pd.DataFrame({"source_pair_id": [f"p{i % 12:02d}-{i}" for i in range(len(status))],
                  "task": "inter", "report_new": [report(i + 100) for i in range(len(status))],
                  "status": status}).to_parquet(root / "rewritten" / "inter.parquet")

    torch.manual_seed(0)
    tok = train_tokenizer([report(i) for i in range(200)], vocab_size=300, max_length=40)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=40, pad_token_id=PAD_ID,
                                        bos_token_id=BOS_ID, eos_token_id=EOS_ID))
    unet = embedded_unet(UNetArch(block_out_channels=(8, 16, 16), attention_head_dim=4), 32, 32)
    pipe = TextToImagePipeline(unet=unet, scheduler=train_scheduler(), text_encoder=text, tokenizer=tok)
    pipe.save_pretrained(root / "generator")
    return {"prepared": root / "prepared" / "pairs.parquet", "rewritten": root / "rewritten",
            "generator": root / "generator"}


def generate(inputs, tmp: Path, name: str, branch: str = "inter", ranks: Ranks | None = None,
             work: str = "work", cfg: SamplingConfig = CFG):
    return generate_fresh(branch, cfg, 0, prepared=inputs["prepared"], rewritten_dir=inputs["rewritten"],
                          generator_dir=inputs["generator"], out_dir=tmp / name, work_root=tmp / work,
                          ranks=ranks or Ranks())


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- ids

def test_ids_are_a_pure_function_of_what_makes_the_image():
    sources = pd.DataFrame({"source_pair_id": [f"p{i}" for i in range(6)], "report": [report(i) for i in range(6)]})
    base = plan("inter", sources, 0, "gensha", CFG)
    assert base["pair_id"].is_unique
    assert base.equals(plan("inter", sources, 0, "gensha", CFG))
    # Row order and the other rows do not matter: each id and seed depends on its own row only.
    shuffled = plan("inter", sources.iloc[[3, 0, 5]], 0, "gensha", CFG)
    assert shuffled.set_index("source_pair_id").equals(base.set_index("source_pair_id").loc[["p3", "p0", "p5"]])
    assert list(base["seed"]) == [seed_from("noise", pid) for pid in base["pair_id"]]
    # The chunk size shapes only the batching, not the ids.
    assert base.equals(plan("inter", sources, 0, "gensha", SamplingConfig(steps=2, guidance=3.0, batch_size=3)))
    # Everything that changes the image changes every id.
    variants = [plan("image_only", sources, 0, "gensha", CFG), plan("inter", sources, 1, "gensha", CFG),
                plan("inter", sources, 0, "othersha", CFG),
                plan("inter", sources, 0, "gensha", SamplingConfig(steps=3, guidance=3.0, batch_size=8)),
                plan("inter", sources, 0, "gensha", SamplingConfig(steps=2, guidance=4.0, batch_size=8)),
                plan("inter", sources, 0, "gensha", SamplingConfig(steps=2, guidance=3.0, resolution=64)),
                plan("inter", sources.assign(report=sources["report"] + " "), 0, "gensha", CFG)]
    for other in variants:
        assert not set(other["pair_id"]) & set(base["pair_id"])


def test_each_replicate_draws_its_own_image_of_every_report():
    """Replicates: every report once per replicate seed, report by report; a replicate's ids (and so its noise)
    do not depend on which other replicates run, and no two replicates share one."""
    sources = pd.DataFrame({"source_pair_id": [f"p{i}" for i in range(4)], "report": [report(i) for i in range(4)]})
    both = plan("inter", sources, 0, "gensha", CFG, (0, 5))
    assert list(both["replicate"]) == [0, 5] * 4 and list(both["source_pair_id"]) == [f"p{i}" for i in range(4) for _ in "ab"]
    assert both["pair_id"].is_unique and both["seed"].is_unique
    for rep in (0, 5):
        alone = plan("inter", sources, 0, "gensha", CFG, (rep,))
        assert alone.reset_index(drop=True).equals(both[both["replicate"] == rep].reset_index(drop=True))


# ------------------------------------------------------------------------------------------ outputs

def test_same_params_and_seed_give_byte_identical_outputs(inputs, tmp_path):
    manifest = generate(inputs, tmp_path, "a", work="work-a")
    generate(inputs, tmp_path, "b", work="work-b")
    a, b = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert a == b and len(a) == N_OK + 1

    # The manifest contract: one row per ok rewrite, files and hashes that match, the stored size.
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert manifest.equals(pd.read_parquet(tmp_path / "a" / "manifest.parquet"))
    rewritten = pd.read_parquet(inputs["rewritten"] / "inter.parquet")
    ok = rewritten[rewritten["status"] == "ok"]
    assert sorted(manifest["source_pair_id"]) == sorted(ok["source_pair_id"])
    assert dict(zip(manifest["source_pair_id"], manifest["report"])) == dict(zip(ok["source_pair_id"], ok["report_new"]))
    assert list(manifest["pair_id"]) == sorted(manifest["pair_id"]) and manifest["pair_id"].is_unique
    assert (manifest["branch"] == "inter").all() and (manifest["generator_sha"] == generator_sha(inputs["generator"])).all()
    assert (manifest["steps"] == CFG.steps).all() and (manifest["guidance"] == CFG.guidance).all()
    assert manifest["eta"].isna().all() and not manifest["inversion"].any()
    images = []
    for rel, sha in zip(manifest["image"], manifest["image_sha256"]):
        assert file_digest(tmp_path / "a" / rel) == sha
        images.append(load_gray(tmp_path / "a" / rel))
    assert all(im.shape == (32, 32) for im in images)
    assert len({im.tobytes() for im in images}) == N_OK  # per-pair noise: no two images alike
    assert not (tmp_path / "work-a").exists() or not any((tmp_path / "work-a").iterdir())  # work folder removed


def test_image_only_uses_the_train_reports(inputs, tmp_path):
    manifest = generate(inputs, tmp_path, "image_only", branch="image_only")
    pairs = pd.read_parquet(inputs["prepared"])
    assert sorted(manifest["source_pair_id"]) == sorted(pairs["pair_id"])
    assert dict(zip(manifest["source_pair_id"], manifest["report"])) == dict(zip(pairs["pair_id"], pairs["report"]))
    assert (manifest["branch"] == "image_only").all()


def test_two_ranks_assemble_the_single_process_output(inputs, tmp_path, caplog):
    single = generate(inputs, tmp_path, "single", work="work-single")
    caplog.set_level(logging.INFO, logger="pairaug.generate.run")
    # Rank 1 first (in this one process): it writes chunks 1, 3, … and leaves; rank 0 writes 0, 2, …,
    # waits for all of them and assembles.
    assert generate(inputs, tmp_path, "sharded", ranks=Ranks(rank=1, world=2), work="work-sharded") is None
    chunks = sorted(p.name for p in (tmp_path / "work-sharded").glob("*/chunk-*"))
    assert chunks == ["chunk-000001"]  # 20 pairs in chunks of 8: rank 1 owns chunk 1 only
    assert not (tmp_path / "sharded").exists()
    sharded = generate(inputs, tmp_path, "sharded", ranks=Ranks(rank=0, world=2), work="work-sharded")
    assert "inter: generated 8 pairs, 0 reused" in caplog.text  # rank 1's chunk (8 pairs)
    assert "inter: generated 12 pairs, 8 reused" in caplog.text  # rank 0: chunks 0 and 2; chunk 1 was done
    assert sharded.equals(single)
    assert folder_bytes(tmp_path / "sharded") == folder_bytes(tmp_path / "single")


# -------------------------------------------------------------------------------------- chunk store

def fake_items(n: int) -> pd.DataFrame:
    return pd.DataFrame({"pair_id": [f"{i:04x}" for i in range(n)], "source_pair_id": [f"p{i}" for i in range(n)],
                         "report": [report(i) for i in range(n)], "seed": list(range(n))})


def fake_make(chunk: pd.DataFrame):
    rows, files = [], {}
    for pid, seed in zip(chunk["pair_id"], chunk["seed"]):
        files[f"images/{pid}.png"] = np.full((4, 4), seed, np.uint8)
        rows.append({"pair_id": pid, "image": f"images/{pid}.png", "seed": int(seed)})
    return rows, files


def test_chunks_have_a_fixed_composition(tmp_path):
    items = fake_items(10)
    store = ChunkStore(tmp_path / "w", items.sample(frac=1, random_state=1), batch_size=4)
    assert store.n_chunks == 3 and [len(store.chunk(k)) for k in range(3)] == [4, 4, 2]
    again = ChunkStore(tmp_path / "w", items, batch_size=4)
    for k in range(3):
        assert list(store.chunk(k)["pair_id"]) == list(again.chunk(k)["pair_id"]) == list(items["pair_id"][4 * k:4 * k + 4])
    assert store.todo() == [0, 1, 2] and store.todo(0, 2) == [0, 2] and store.todo(1, 2) == [1]
    assert ChunkStore(tmp_path / "e", fake_items(0), 4).n_chunks == 0


def test_chunks_keep_a_group_together(tmp_path):
    """group_by: a group's items are contiguous (so a chunk inverts a film once for all its edits), and
    the chunks stay fixed whatever order the items come in."""
    items = fake_items(12).assign(source_pair_id=[f"p{i % 3}" for i in range(12)])
    store = ChunkStore(tmp_path / "w", items.sample(frac=1, random_state=2), batch_size=4, group_by="source_pair_id")
    assert [sorted(set(store.chunk(k)["source_pair_id"])) for k in range(3)] == [["p0"], ["p1"], ["p2"]]
    again = ChunkStore(tmp_path / "w", items, batch_size=4, group_by="source_pair_id")
    assert all(list(store.chunk(k)["pair_id"]) == list(again.chunk(k)["pair_id"]) for k in range(3))
    # without grouping the same items interleave: every chunk holds all three groups
    plain = ChunkStore(tmp_path / "w", items, batch_size=4)
    assert all(plain.chunk(k)["source_pair_id"].nunique() == 3 for k in range(3))


def test_an_interrupted_run_redoes_only_the_missing_chunks(tmp_path):
    store = ChunkStore(tmp_path / "w", fake_items(10), batch_size=4)
    made: list[str] = []

    def crash_on_chunk_2(chunk):
        if chunk["pair_id"].iloc[0] == "0008":
            raise KeyboardInterrupt  # the process is stopped while it works on chunk 2
        made.extend(chunk["pair_id"])
        return fake_make(chunk)

    with pytest.raises(KeyboardInterrupt):
        run_chunks(store, crash_on_chunk_2)
    assert [store.done(k) for k in range(3)] == [True, True, False] and store.todo() == [2]
    made.clear()
    assert run_chunks(store, lambda c: (made.extend(c["pair_id"]), fake_make(c))[1]) == 2
    assert made == ["0008", "0009"]
    manifest = store.assemble(tmp_path / "out", ["pair_id", "image", "seed", "image_sha256"])
    reference = ChunkStore(tmp_path / "w2", fake_items(10), batch_size=4)
    run_chunks(reference, fake_make)
    reference.assemble(tmp_path / "ref", ["pair_id", "image", "seed", "image_sha256"])
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "ref") and len(manifest) == 10


def test_a_chunk_is_written_whole_or_not_at_all(tmp_path):
    store = ChunkStore(tmp_path / "w", fake_items(4), batch_size=4)
    rows, files = fake_make(store.chunk(0))
    files["images/0003.png"] = np.zeros((4, 4, 7, 2), np.uint8)  # PIL cannot write this: fails midway
    with pytest.raises((TypeError, ValueError, OSError)):
        store.write(0, rows, files)
    assert not store.done(0) and not store.path(0).exists()
    assert not [p for p in (tmp_path / "w").rglob("*.png")]  # no half chunk left behind
    store.write(0, *fake_make(store.chunk(0)))
    assert store.done(0) and len(list(store.path(0).rglob("*.png"))) == 4


def test_a_failed_assembly_can_be_retried(tmp_path, monkeypatch):
    store = ChunkStore(tmp_path / "w", fake_items(6), batch_size=4)
    run_chunks(store, fake_make)
    import pairaug.generate.store as store_module

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(store_module, "write_parquet", disk_full)
        with pytest.raises(OSError):
            store.assemble(tmp_path / "out", ["pair_id", "image", "seed", "image_sha256"])
    assert not (tmp_path / "out").exists() and store.todo() == []  # the chunks keep their images
    manifest = store.assemble(tmp_path / "out", ["pair_id", "image", "seed", "image_sha256"])
    assert len(manifest) == 6 and all((tmp_path / "out" / rel).exists() for rel in manifest["image"])
    assert not store.work.exists()


def test_ranks_from_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = Ranks.from_env()
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.is_main) == (3, 4, 1, False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    assert Ranks.from_env() == Ranks(0, 1, 0) and Ranks().is_main
    # half precision is for GPUs; a CPU run stays float32 (tests/test_devices.py: the device itself)
    assert generation_dtype("float16", torch.device("cpu")) == torch.float32


# --------------------------------------------------------------------------------------- bad params

@pytest.mark.parametrize(("cls", "name", "value", "key"), [
    (SamplingConfig, "generate", {"steps": 0}, "generate.steps"),
    (SamplingConfig, "generate", {"guidance": -1}, "generate.guidance"),
    (SamplingConfig, "generate", {"batch_size": "64"}, "generate.batch_size"),
    (SamplingConfig, "generate", {"dtype": "float8"}, "generate.dtype"),
    (SamplingConfig, "generate", {"resolution": 0}, "generate.resolution"),
    (SamplingConfig, "generate", {"sampler": "ddim"}, "generate.sampler"),
    (GeneratorConfig, "generator", {"train": {"text_dropout": 1.5}}, "generator.train.text_dropout"),
    (GeneratorConfig, "generator", {"train": {"ema_decay": 2}}, "generator.train.ema_decay"),
    (GeneratorConfig, "generator", {"check": {"reports": 0}}, "generator.check.reports"),
    (GeneratorConfig, "generator", {"arch": {"block_out_channels": 16}}, "generator.arch.block_out_channels"),
    (ScorerConfig, "scorer", {"kind": "medclip-v2"}, "scorer.kind"),
    (ScorerConfig, "scorer", {"train": {"optimizer": "adam"}}, "scorer.train.optimizer"),
    (ScorerConfig, "scorer", {"arch": {"layers": 2}}, "scorer.arch.layers"),
])
def test_bad_params_name_the_key(cls, name, value, key):
    with pytest.raises(ParamError) as err:
        section(cls, {name: value}, name)
    assert err.value.key == key and str(err.value).startswith(f"params.yaml: {key}:")


def test_generate_stage_exits_2_with_the_key(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("seed: 0\ngenerate:\n  steps: -3\n")
    monkeypatch.chdir(tmp_path)
    for argv, expected in ((["inter"], "error: params.yaml: generate.steps: must be > 0, got -3"),
                           (["outer"], "error: params.yaml: stage argument: expected inter or image_only")):
        monkeypatch.setattr(sys, "argv", ["generate.py", *argv])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(REPO / "stages" / "generate.py"), run_name="__main__")
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(expected)
