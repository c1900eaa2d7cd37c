"""The intra-generate stage: output contract, an external Stable-Diffusion-format folder (latent space, VAE),
resume, clear errors, and the stage as DVC runs it in the tiny pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_PARAMS
from conftest import run as run_cmd
from diffusers import UNet2DConditionModel
from test_intra_p2p import tiny_generator
from tiny_sd import save_tiny_sd
from transformers import CLIPTextConfig, CLIPTextModel

from pairaug.data.images import load_gray
from pairaug.data.labeler import label_report
from pairaug.data.phantom import iter_studies, render
from pairaug.data.schema import LABELS, pairs_frame
from pairaug.errors import InputError, ParamError
from pairaug.generate.common import MANIFEST_COLUMNS, generator_sha, plan, read_rewritten
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra import INTRA_COLUMNS, generate_intra, intra_store, make_intra_chunk, real_sources
from pairaug.generate.intra_check import intra_metrics, kept_intra_ids
from pairaug.generate.intra_sweep import chosen_setting
from pairaug.hashing import file_digest
from pairaug.io import save_png
from pairaug.models.generator import load_generator
from pairaug.models.scorer import load_scorer
from pairaug.models.tokenizer import train_tokenizer
from pairaug.params import section

STORED = 32
N_PAIRS = 6
EDIT = {"guidance": 3.5, "eta": 0.5, "self_eta": 0.2}  # what intra-sweep chooses in the pipeline


def write_inputs(root: Path, n: int = N_PAIRS) -> tuple[Path, Path]:
    """A prepared dataset of phantom films (32 px) and IntraAug rewrites of its reports."""
    studies = list(iter_studies(0, "train", n))[:n]
    (root / "prepared/images").mkdir(parents=True)
    rows, edits = [], []
    for i, s in enumerate(studies):
        rel = f"images/{i}.png"
        save_png(render(s, STORED), root / "prepared" / rel)
        rows.append({"pair_id": f"p{i}", "patient_id": s.patient_id, "study_id": s.study_id, "split": "train",
                     "image": rel, "report": s.report, "view": "PA", **s.labels(), "label_source": "phantom"})
        new = ("Large left pleural effusion. " if i % 2 else "No pleural effusion. ") + s.report
        edits.append({"source_pair_id": f"p{i}", "task": "intra", "report_new": new, **label_report(new),
                      "status": "ok"})
    prepared = root / "prepared/pairs.parquet"
    pairs_frame(rows).to_parquet(prepared)
    rewritten = root / "intra.parquet"
    frame = pd.DataFrame(edits)
    for label in LABELS:
        frame[label] = frame[label].astype("Int8")
    frame.to_parquet(rewritten)
    return prepared, rewritten


def run(cfg: IntraConfig, root: Path, prepared: Path, rewritten: Path, generator: Path, name: str) -> pd.DataFrame:
    return generate_intra(cfg, 0, prepared=prepared, rewritten=rewritten, generator_dir=generator,
                          out_dir=root / name, work_root=root / "work")


def check_contract(manifest: pd.DataFrame, out: Path, inversion: bool, cfg: IntraConfig) -> None:
    assert list(manifest.columns) == INTRA_COLUMNS
    assert INTRA_COLUMNS[:len(MANIFEST_COLUMNS)] == MANIFEST_COLUMNS
    assert len(manifest) == N_PAIRS * cfg.candidates and manifest["pair_id"].is_unique
    assert (manifest["branch"] == "intra").all() and (manifest["inversion"] == inversion).all()
    assert (manifest["eta"] == cfg.eta).all() and (manifest["steps"] == cfg.steps).all()
    for _, row in manifest.iterrows():
        for col in ("image", "source_image"):
            assert file_digest(out / row[col]) == row[f"{col}_sha256"]
            assert load_gray(out / row[col]).shape == (STORED, STORED)
    assert sorted(p.name for p in out.iterdir()) == ["images", "manifest.parquet", "source"]


# ------------------------------------------------------------------ an external Stable Diffusion folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    """A Stable Diffusion v1-layout folder saved by diffusers' own pipeline: a 4-channel latent UNet, a VAE
    with a 2x downscale (32 px images, 16x16 latents), a CLIP text encoder, PNDM scheduler, no safety checker."""
    torch.manual_seed(0)
    tok = train_tokenizer([s.report for s in iter_studies(0, "train", 20)] + ["large left pleural effusion"],
                          vocab_size=200, max_length=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id))
    return save_tiny_sd(tmp_path_factory.mktemp("ext") / "tiny-sd", tok, text_encoder)


@pytest.mark.parametrize("init", ["noise", "inversion"])
def test_external_stable_diffusion_folder_edits_in_latent_space(tmp_path, sd_folder, init):
    prepared, rewritten = write_inputs(tmp_path)
    cfg = IntraConfig(steps=3, batch_size=4, init=init, self_max_positions=256, candidates=1, **EDIT)
    seen = []

    def spy(module, args):  # a global forward pre-hook: what latents did the UNet see?
        if isinstance(module, UNet2DConditionModel):
            seen.append(tuple(args[0].shape))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(spy)
    try:
        manifest = run(cfg, tmp_path, prepared, rewritten, sd_folder, "out")
    finally:
        handle.remove()
    check_contract(manifest, tmp_path / "out", init == "inversion", cfg)
    # 32 px through the 2x VAE: 4-channel 16x16 latents; chunks of 4 and 2 pairs, each step one batch of
    # [uncond y, uncond y', cond y, cond y'] rows; inversion adds guidance-1 passes over the films alone
    assert {s[1:] for s in seen} == {(4, 16, 16)}
    edit_calls = [s for s in seen if s[0] in (16, 8)]
    assert len(edit_calls) == 2 * cfg.steps  # SD's schedule keeps t = 999: no step is skipped
    if init == "inversion":  # one refinement: two passes per step, for each chunk
        assert sorted(s[0] for s in seen if s[0] not in (16, 8)) == [2] * 2 * cfg.steps + [4] * 2 * cfg.steps
    edited = np.stack([load_gray(tmp_path / "out" / p) for p in manifest["image"]])
    source = np.stack([load_gray(tmp_path / "out" / p) for p in manifest["source_image"]])
    assert not np.array_equal(edited, source)  # y' differs from y, so does the image


# ----------------------------------------------------------------------------------------- resume


def test_resume_reuses_finished_chunks_and_matches_an_uninterrupted_run(tmp_path):
    prepared, rewritten = write_inputs(tmp_path)
    generator = tiny_generator(tmp_path / "generator", size=16)  # drawn at 16 px, stored at 32
    cfg = IntraConfig(steps=3, batch_size=4, init="inversion", **EDIT)
    whole = run(cfg, tmp_path, prepared, rewritten, generator, "whole")
    check_contract(whole, tmp_path / "whole", True, cfg)
    # cfg.candidates edits per report: candidate 0 keeps a single edit's id; the others start from the
    # inversion with fresh noise mixed in, so their films differ from candidate 0's
    edits = read_rewritten(rewritten)
    single = plan("intra", edits, 0, generator_sha(generator), cfg)
    first = whole[whole["candidate"] == 0].set_index("source_pair_id")
    assert sorted(first["pair_id"]) == sorted(single["pair_id"])
    for (src, _), group in whole.groupby(["source_pair_id", "report"]):
        assert sorted(group["candidate"]) == list(range(cfg.candidates))
        films = [load_gray(tmp_path / "whole" / rel).tobytes() for rel in group.sort_values("candidate")["image"]]
        assert len(set(films)) == cfg.candidates, src
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())

    # an interrupted run left chunk 0 behind; mark its images so a reuse is visible
    store = intra_store(cfg, 0, read_rewritten(rewritten), generator_sha(generator), tmp_path / "work")
    sources = real_sources(prepared, read_rewritten(rewritten)["source_pair_id"], rewritten)
    make = make_intra_chunk(load_generator(generator), cfg, STORED, generator_sha(generator), sources)
    rows, files = make(store.chunk(0))
    marked = {rel: np.full_like(px, 7) for rel, px in files.items()}
    store.write(0, rows, marked)

    resumed = run(cfg, tmp_path, prepared, rewritten, generator, "resumed")
    reused = set(store.chunk(0)["pair_id"])
    for (_, a), (_, b) in zip(whole.iterrows(), resumed.iterrows()):
        assert a["pair_id"] == b["pair_id"]
        if a["pair_id"] in reused:
            assert (load_gray(tmp_path / "resumed" / b["image"]) == 7).all()
        else:  # regenerated chunks are byte-identical to the uninterrupted run
            assert (a["image_sha256"], a["source_image_sha256"]) == (b["image_sha256"], b["source_image_sha256"])

    # a different edit setting never picks up those chunks: its work folder differs, its pair ids do not
    # (the guidance is part of the sampler a pair id hashes, as for inter pairs)
    edits, sha = read_rewritten(rewritten), generator_sha(generator)
    for changed in ({"eta": 0.2}, {"init": "noise"}, {"self_eta": 0.0}, {"inversion_refine": 0},
                    {"inversion": "ddim"}, {"reweight": 3.0}, {"blend_threshold": 0.3}):
        other = intra_store(IntraConfig(steps=3, batch_size=4, **{**EDIT, **changed}), 0, edits, sha,
                            tmp_path / "work")
        assert other.work != store.work and other.items["pair_id"].tolist() == store.items["pair_id"].tolist()


# ----------------------------------------------------------------------------------------- errors


def test_a_film_is_edited_in_one_chunk_for_all_its_candidates_and_replicates(tmp_path):
    """The default shape (2 candidates × 3 replicates = 6 items a film): the store keeps a film's items
    together, so each chunk inverts ~batch / 6 films instead of ~batch, and a film spans at most 2 chunks."""
    prepared, rewritten = write_inputs(tmp_path, n=8)
    generator = tiny_generator(tmp_path / "generator", size=16)
    cfg = IntraConfig(steps=3, batch_size=12, init="inversion", **EDIT)
    edits = read_rewritten(rewritten)
    store = intra_store(cfg, 0, edits, generator_sha(generator), tmp_path / "work", replicates=(0, 1, 2))
    per_film = len(store.items) // store.items["source_pair_id"].nunique()
    assert per_film == cfg.candidates * 3
    chunks_of = store.items.assign(chunk=store.items.index // cfg.batch_size).groupby("source_pair_id")["chunk"]
    assert chunks_of.nunique().max() <= 2
    assert all(store.chunk(k)["source_pair_id"].nunique() <= cfg.batch_size // per_film + 1
               for k in range(store.n_chunks))


def test_replicates_share_the_inversion_edit_and_draw_their_own_candidates(tmp_path):
    """Two replicates: candidate 0 starts from the film's inversion (nothing drawn), so its edit is the same
    pixels in both; candidate 1 mixes in the replicate's own noise, so it differs between them. Each
    replicate alone gives exactly its rows of the joint run."""
    prepared, rewritten = write_inputs(tmp_path, n=4)
    generator = tiny_generator(tmp_path / "generator", size=16)
    cfg = IntraConfig(steps=3, batch_size=8, init="inversion", **EDIT)

    def gen(reps, name):
        return generate_intra(cfg, 0, reps, prepared=prepared, rewritten=rewritten, generator_dir=generator,
                              out_dir=tmp_path / name, work_root=tmp_path / "work")

    both = gen((0, 1), "both")
    assert len(both) == 4 * 2 * cfg.candidates and both["pair_id"].is_unique
    film = {pid: load_gray(tmp_path / "both" / rel).tobytes() for pid, rel in zip(both["pair_id"], both["image"])}
    for _, group in both.groupby("source_pair_id"):
        by = {(r.replicate, r.candidate): film[r.pair_id] for r in group.itertuples()}
        assert by[(0, 0)] == by[(1, 0)]
        assert by[(0, 1)] != by[(1, 1)]
    one = gen((1,), "one").set_index("pair_id")
    rep1 = both[both["replicate"] == 1].set_index("pair_id")
    assert sorted(one.index) == sorted(rep1.index)
    for pid in one.index:
        assert load_gray(tmp_path / "one" / one.at[pid, "image"]).tobytes() == film[pid]


def test_a_report_of_an_unknown_film_names_file_row_and_field(tmp_path):
    prepared, rewritten = write_inputs(tmp_path)
    frame = pd.read_parquet(rewritten)
    frame.loc[3, "source_pair_id"] = "nope"
    frame.to_parquet(rewritten)
    with pytest.raises(InputError, match=r"'nope'.*row 3.*field 'source_pair_id'"):
        run(IntraConfig(steps=2, **EDIT), tmp_path, prepared, rewritten, tmp_path / "unused", "out")


@pytest.mark.parametrize(("params", "key"), [({"eta": 1.5}, "intra.eta"), ({"init": "random"}, "intra.init"),
                                              ({"self_max_positions": 0}, "intra.self_max_positions"),
                                              ({"check": {"psnr_pairs": 0}}, "intra.check.psnr_pairs"),
                                              ({"inversion": "exact"}, "intra.inversion"),
                                              ({"sweep": {"eta": []}}, "intra.sweep.eta"),
                                              ({"blend_threshold": 2.0}, "intra.blend_threshold")])
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        section(IntraConfig, {"intra": params}, "intra")


def test_an_edit_setting_left_null_needs_the_sweeps_choice(tmp_path):
    prepared, rewritten = write_inputs(tmp_path)
    with pytest.raises(ParamError, match=r"intra\.guidance.*intra-sweep"):
        run(IntraConfig(steps=2), tmp_path, prepared, rewritten, tmp_path / "unused", "out")
    chosen = IntraConfig(eta=0.8).resolved({"guidance": 7.5, "eta": 0.2, "self_eta": 0.0})
    assert (chosen.guidance, chosen.eta, chosen.self_eta) == (7.5, 0.8, 0.0)  # a fixed param wins


# ------------------------------------------------------------------------------ the stage under DVC


@pytest.mark.slow
def test_stage_in_the_tiny_pipeline(tiny_repo):
    """Under DVC the stage writes every edit, and metrics/intra.json measures those very files: the patient
    figure recomputed from the images with the scorer, the changed-label counts from the reports' labels,
    and the whole file again from the outputs (nothing in it comes from elsewhere)."""
    out = tiny_repo / "data/synthetic/intra"
    manifest = pd.read_parquet(out / "manifest.parquet")
    rewritten = read_rewritten(tiny_repo / "data/rewritten/intra.parquet")
    candidates = TINY_PARAMS["intra"]["candidates"]
    assert len(manifest) == candidates * len(rewritten) and list(manifest.columns) == INTRA_COLUMNS
    assert sorted(manifest["candidate"].unique()) == list(range(candidates))
    assert manifest["inversion"].all()  # the default init
    assert not (tiny_repo / "data/.work").exists() or not list((tiny_repo / "data/.work").glob("intra-*"))
    pairs = pd.read_parquet(tiny_repo / "data/prepared/pairs.parquet").set_index("pair_id")
    edited = np.stack([load_gray(out / rel) for rel in manifest["image"]])
    films = np.stack([load_gray(tiny_repo / "data/prepared" / rel) for rel in pairs.loc[manifest["source_pair_id"], "image"]])
    assert not (edited == films).all(axis=(1, 2)).any()  # every x' is an edit, not a copy of its film

    metrics = json.loads((tiny_repo / "metrics/intra.json").read_text())
    assert metrics["pairs"] == len(manifest)
    scorer = load_scorer(tiny_repo / "models/scorer")
    cos = (scorer.encode_images(edited) * scorer.encode_images(films)).sum(1).mean()
    assert metrics["patient"]["edited_vs_source_film"] == pytest.approx(float(cos), abs=1e-5)
    edits = pd.read_parquet(tiny_repo / "data/rewritten/intra.parquet").query("status == 'ok'")
    new = edits.drop_duplicates(["source_pair_id", "report_new"]).set_index(["source_pair_id", "report_new"])
    new = new.loc[list(zip(manifest["source_pair_id"], manifest["report"]))]
    for label, n in metrics["labels"]["all"]["changed_pairs"].items():
        before = pairs.loc[manifest["source_pair_id"], label].fillna(0).to_numpy() == 1
        assert n == int(((new[label].fillna(0).to_numpy() == 1) != before).sum()), label

    kept = kept_intra_ids(tiny_repo / "data/pruned/pairs.parquet")
    assert metrics["kept"] == len(kept) > 0 and kept <= set(manifest["pair_id"])

    # the settings are intra-sweep's choice, made on valid films only
    sweep = json.loads((tiny_repo / "metrics/intra_sweep.json").read_text())
    chosen = [r for r in sweep if r["chosen"]]
    assert len(chosen) == 1 and (manifest["eta"] == chosen[0]["eta"]).all()
    assert (manifest["guidance"] == chosen[0]["guidance"]).all()
    valid_edits = pd.read_parquet(tiny_repo / "data/rewritten/intra_valid.parquet")
    assert set(pairs.loc[valid_edits["source_pair_id"], "split"]) == {"valid"}

    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    cfg = section(IntraConfig, params, "intra").resolved(chosen_setting(tiny_repo / "metrics/intra_sweep.json"))
    again = intra_metrics(cfg, params["seed"], manifest, out_dir=out, prepared=tiny_repo / "data/prepared/pairs.parquet",
                          rewritten=tiny_repo / "data/rewritten/intra.parquet",
                          generator_dir=tiny_repo / "models/generator", scorer_dir=tiny_repo / "models/scorer",
                          probe_films=tiny_repo / "data/pool/pairs.parquet", kept=kept)
    assert _same(json.loads(json.dumps(again)), metrics)


@pytest.mark.slow
def test_no_kept_intra_pair_gives_null_kept_figures_and_one_log_line(tiny_repo):
    """Prune may keep no intra pair (an editor whose edits draw no change): intra-check still measures every
    candidate, its kept figures are null, and the stage says so in one line (no traceback)."""
    out = tiny_repo / "data/synthetic/intra"
    manifest = pd.read_parquet(out / "manifest.parquet")
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    cfg = section(IntraConfig, params, "intra").resolved(chosen_setting(tiny_repo / "metrics/intra_sweep.json"))
    metrics = intra_metrics(cfg, params["seed"], manifest, out_dir=out,
                            prepared=tiny_repo / "data/prepared/pairs.parquet",
                            rewritten=tiny_repo / "data/rewritten/intra.parquet",
                            generator_dir=tiny_repo / "models/generator", scorer_dir=tiny_repo / "models/scorer",
                            probe_films=tiny_repo / "data/pool/pairs.parquet", kept=set())
    assert metrics["kept"] == 0 and metrics["pairs"] == len(manifest)
    assert metrics["labels"]["kept"] is None and metrics["patient"]["kept_edited_vs_source_film"] is None
    assert metrics["labels"]["all"]["pairs"] == len(manifest)
    json.dumps(metrics, allow_nan=False)  # strict JSON: null, not NaN

    # the stage itself, on a pruned set with no intra pair
    pruned, written = tiny_repo / "data/pruned/pairs.parquet", tiny_repo / "metrics/intra.json"
    saved = {p: p.read_bytes() for p in (pruned, written)}
    try:
        pairs = pd.read_parquet(pruned)
        pairs[pairs["branch"] != "intra"].to_parquet(pruned)
        proc = run_cmd([sys.executable, "stages/intra_check.py"], tiny_repo, check=False)
        figures = json.loads(written.read_text())
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "prune kept no intra pair" in proc.stderr + proc.stdout
    assert figures["kept"] == 0 and figures["labels"]["kept"] is None


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6 or (np.isnan(a) and np.isnan(b))
    return a == b
