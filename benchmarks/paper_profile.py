"""The paper's setting at its real architectures, with random weights and tiny counts: every stage's wall
time and peak memory, and seconds per UNet row.

    python benchmarks/paper_profile.py                    # CPU: 256 px generation, 2 steps (~30 min, 2 cores)
    python benchmarks/paper_profile.py --device cuda      # GPU: 512 px, fp16 inter, the paper's 50 / 75 steps
    python benchmarks/paper_profile.py --work /tmp/pp --keep --json profile.json

On a fresh `git clone` of this repository's HEAD it writes random-weight folders of the real models:
Stable Diffusion v1.5's layout (859.5M-parameter UNet, VAE with scaling 0.18215, a 768-wide 12-layer
CLIP text encoder: RoentGen's architecture), CLIP ViT-B/32 with CheXzero's 12-layer 512-wide text tower
(pretraining's init), and MedCLIP (Bio_ClinicalBERT + Swin-tiny, the pruning scorer), then runs the
whole pipeline on a phantom with the README's paper command (every setting the paper fixes), each stage
alone as `dvc repro --single-item <stage>`, sampling its process tree's memory.

What is not the paper's, and why (printed with the results):
- counts: a handful of patients and pairs, 2 sampling steps on CPU (GPU: the paper's 50 inter / 75
  intra), 2 IntraAug candidates (paper: 10), one pretraining seed of 2 steps, 5 of the 8 mixes, small
  checks: the profile measures cost per unit, not quality;
- CPU only: 256 px generation instead of 512 (a 512 px UNet row costs ~4x), float32 everywhere;
- random weights: prune's thresholds pass every pair (inter_tau -1; intra_lambda 10 puts PairAug's
  S1-S3 thresholds below any cosine, and each report keeps its best candidate) and validate asks no
  drawn change (min_change_read 0), since a random scorer ranks nothing and a random generator draws
  nothing a probe could read;
- films are stored at 224 px (the VLP's input); MLflow logs runs but not the 600 MB models.
Tokenizers are trained on the phantom's reports (their vocabularies are the only thing smaller than the
real ones; the embedding matrices keep the real vocabulary sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_memory import measure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3


def paper_params(models: Path, device: str) -> dict:
    """The README's paper command (`Scaling out`) at tiny counts; the overrides the module docstring lists."""
    gpu = device == "cuda"
    res = 512 if gpu else 256
    return {
        "launch": {"device": device, "mixed_precision": "bf16" if gpu else "no"},
        "data": {"image_size": 224, "phantom": {"train_patients": 4, "valid_patients": 4, "test_patients": 8,
                                                "max_studies": 1}},
        "pool": {"phantom": {"train_patients": 40, "valid_patients": 6}},
        "rewrite": {"min_words": 20, "valid_reports": 2},
        "scorer": {"checkpoint": str(models / "medclip"), "kind": "medclip"},
        "generator": {"checkpoint": str(models / "sd-v1-5"), "check": {"reports": 4, "steps": 2 if not gpu else 50,
                                                                       "guidance": 4.0}},
        "generate": {"steps": 50 if gpu else 2, "guidance": 4.0, "resolution": res,
                     "dtype": "float16", "batch_size": 4},
        "intra": {"steps": 75 if gpu else 2, "guidance": 4.0, "eta": 0.5, "self_eta": 0.2, "self_max_positions": 256,
                  "resolution": res, "dtype": "float32", "batch_size": 2, "candidates": 2, "init": "noise",
                  "reweight": 1.0, "check": {"psnr_pairs": 2, "reference_pairs": 2}},
        "prune": {"inter_tau": -1.0, "intra_lambda": 10.0, "intra_min_change_read": None, "intra_rank": "scores", "batch_size": 16},
        "privacy": {"pixel_size": 64, "batch_size": 16},
        "validate": {"min_change_read": 0.0},
        "replicates": [0],
        "pretrain": {"init_checkpoint": str(models / "clip-vit-b32-chexzero"),
                     "train": {"epochs": None, "steps": 2, "batch_size": 4, "optimizer": "sgd", "lr": 1e-4, "warmup_steps": 1,
                               "select_every": 2},
                     "mixes": {"none": [], "real_dup": ["real_dup"], "intra": ["intra"],
                               "pairaug": ["inter", "intra"], "pool_real": ["pool_real"]}},
        "tracking": {"log_model": False},
        "evaluate": {"probe_draws": 1, "batch_size": 16},
        "report": {"tsne_per_set": 10, "gallery_pairs": 2, "bootstrap_resamples": 100},
    }


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "mixes" else v
    return out


# --------------------------------------------------------------------------------- random-weight folders


def phantom_reports(n: int = 200) -> list[str]:
    from pairaug.data.phantom import iter_studies

    return [s.report for s in iter_studies(0, "train", n)][:n]


def build_models(models: Path) -> dict:
    """The three random-weight folders at the real architectures; returns their parameter counts."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertTokenizer, CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    from pairaug.models.clip import ImagePreprocessor
    from pairaug.models.medclip import published_configs, save_random_medclip
    from pairaug.models.tokenizer import train_tokenizer

    torch.manual_seed(0)
    reports = phantom_reports()
    counts = {}
    # Stable Diffusion v1.5 (RoentGen's layout): diffusers' defaults are SD v1's UNet, cross-attention 768
    tok = train_tokenizer(reports + ["large left pleural effusion"], vocab_size=1000, max_length=77)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, latent_channels=4, sample_size=512, scaling_factor=0.18215)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(models / "sd-v1-5")
    counts["sd_unet"] = sum(p.numel() for p in unet.parameters())
    counts["sd_vae"] = sum(p.numel() for p in vae.parameters())
    counts["sd_text_encoder"] = sum(p.numel() for p in text.parameters())
    del unet, vae, text
    # CLIP ViT-B/32 with CheXzero's text tower (12 layers, 512 wide, 8 heads, 77 positions)
    tok = train_tokenizer(reports, vocab_size=1000, max_length=77)
    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                     "num_attention_heads": 8, "max_position_embeddings": 77, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "patch_size": 32, "image_size": 224, "num_channels": 3},
        projection_dim=512)
    clip = CLIPModel(config)
    folder = models / "clip-vit-b32-chexzero"
    clip.save_pretrained(folder)
    tok.save_pretrained(folder)
    ImagePreprocessor(224, 3, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)).save(folder)
    counts["clip_vit_b32_chexzero"] = sum(p.numel() for p in clip.parameters())
    del clip
    # MedCLIP: Bio_ClinicalBERT + Swin-tiny (the tokenizer's vocabulary from the phantom's words)
    words = sorted({w.strip(".,;:").lower() for r in reports for w in r.split()} - {""})
    bert_tok = BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    text_config, vision_config = published_configs()
    save_random_medclip(models / "medclip", text_config, vision_config, bert_tok)
    counts["medclip"] = sum(v.numel() for v in torch.load(models / "medclip" / "pytorch_model.bin",
                                                           weights_only=True).values())
    return counts


def unet_row_seconds(models: Path, device: str, resolution: int, rows: int = 2, repeats: int = 2) -> float:
    """Seconds per UNet row (one latent through the UNet, text-conditioned) at `resolution`, best of repeats."""
    from pairaug.models.generator import load_generator

    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = load_generator(models / "sd-v1-5", dtype=dtype, device=device)
    latents = torch.randn(rows, 4, resolution // 8, resolution // 8, device=device, dtype=dtype)
    cond = pipe.encode_prompt(["no acute cardiopulmonary process"] * rows)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first call warms up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            pipe.unet(latents, 500, encoder_hidden_states=cond)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best / rows


# ------------------------------------------------------------------------------------------- the run


def stage_order(repo: Path) -> list[str]:
    """Every stage of dvc.yaml, dependencies first (DVC's own graph)."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(repo)) as dvc:
        graph = dvc.index.graph  # edges: stage → the stages it depends on
        # by name (`addressing` is relative to the caller's folder, not the clone's)
        return [stage.name for stage in reversed(list(nx.topological_sort(graph))) if isinstance(stage, PipelineStage)]


def unet_rows(repo: Path, params: dict, stage: str) -> int | None:
    """UNet rows a generation stage ran (2 a sampling step with guidance, 4 for an IntraAug edit pair)."""
    import pandas as pd

    gen, intra = params["generate"], params["intra"]
    if stage in ("inter-generate", "image-only-generate"):
        branch = "inter" if stage == "inter-generate" else "image_only"
        return len(pd.read_parquet(repo / f"data/synthetic/{branch}/manifest.parquet")) * gen["steps"] * 2
    if stage == "intra-generate":
        return len(pd.read_parquet(repo / "data/synthetic/intra/manifest.parquet")) * intra["steps"] * 4
    if stage == "check-priors":
        return params["generator"]["check"]["reports"] * params["generator"]["check"]["steps"] * 2
    if stage == "intra-sweep":
        return params["rewrite"]["valid_reports"] * intra["steps"] * 4
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (models, clone, logs)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    work = (args.work or Path(tempfile.mkdtemp(prefix="pairaug-paper-"))).resolve()
    models, repo, logs = work / "models", work / "repo", work / "logs"
    for d in (models, logs):
        d.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    counts = build_models(models)
    print(f"random-weight folders in {time.monotonic() - t0:.0f} s: "
          + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()), flush=True)
    if repo.exists():
        shutil.rmtree(repo)
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    params = merge(yaml.safe_load((repo / "params.yaml").read_text()), paper_params(models, args.device))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    resolution = params["generate"]["resolution"]
    row_s = unet_row_seconds(models, args.device, resolution)
    print(f"UNet row at {resolution} px on {args.device}: {row_s:.2f} s (in-process, batch of 2)", flush=True)
    env_path = f"{repo / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    os.environ["PYTHONPATH"] = env_path  # the clone's code, not an installed copy
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the clone's own mlflow.db
    rows = []
    for i, stage in enumerate(stage_order(repo)):
        m = measure(stage, ["dvc", "repro", "--single-item", stage], repo, 0.2, logs / f"{i:02d}-{stage}.log")
        n_rows = unet_rows(repo, params, stage) if m.returncode == 0 else None
        rows.append({"stage": stage, "rc": m.returncode, "wall_s": round(m.wall_s, 1),
                     "peak_tree_gib": round(m.peak_tree_rss / GIB, 2), "peak_process_gib": round(m.peak_process_rss / GIB, 2),
                     "unet_rows": n_rows, "s_per_unet_row": round(m.wall_s / n_rows, 2) if n_rows else None})
        r = rows[-1]
        print(f"{stage:<24} rc {r['rc']}  {r['wall_s']:>7.1f} s  peak {r['peak_tree_gib']:>5.2f} GiB"
              + (f"  {n_rows} UNet rows, {r['s_per_unet_row']:.2f} s/row (stage wall)" if n_rows else ""), flush=True)
        if m.returncode:
            print(f"  failed: see {logs / f'{i:02d}-{stage}.log'}", flush=True)
            break
    images = {s["stage"]: s for s in rows}
    result = {"device": args.device, "resolution": resolution, "unet_row_s": round(row_s, 3), "params": counts,
              "stages": rows, "total_wall_s": round(sum(r["wall_s"] for r in rows), 1),
              "overrides": "see benchmarks/paper_profile.py's docstring"}
    if args.device == "cuda" and "inter-generate" in images and images["inter-generate"]["rc"] == 0:
        import pandas as pd

        n = len(pd.read_parquet(repo / "data/synthetic/inter/manifest.parquet"))
        result["inter_images_per_s"] = round(n / images["inter-generate"]["wall_s"], 3)
    print(f"\ntotal {result['total_wall_s']:.0f} s over {len(rows)} stages; peak "
          f"{max(r['peak_tree_gib'] for r in rows):.2f} GiB; work folder {work}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
