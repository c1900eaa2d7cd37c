"""The paper's qualitative figures: a t-SNE of real vs synthetic embeddings, and a gallery per branch.

The gallery is a self-contained HTML page per branch (images inlined): the source image and report
beside the synthetic image and its new report, with the pair's scores and whether pruning kept it —
the quickest way for a radiologist to judge what the pipeline made.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pairaug.data.images import load_gray
from pairaug.io import atomic_path
from pairaug.models.scorer import Scorer
from pairaug.templates import render

SET_COLORS = {"real": "#1f77b4", "inter": "#d62728", "intra": "#2ca02c", "image_only": "#9467bd", "paraphrase": "#ff7f0e"}


def tsne_figure(scorer: Scorer, sets: dict[str, tuple[list[str], list[str]]], out: str | Path, seed: int) -> dict:
    """sets: name → (image paths, reports). Two t-SNE panels (images, reports) coloured by set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    names = [n for n, (imgs, _) in sets.items() if imgs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    counts = {}
    for ax, kind in zip(axes, ("images", "reports")):
        embs, tags = [], []
        for name in names:
            imgs, texts = sets[name]
            e = scorer.encode_images(imgs) if kind == "images" else scorer.encode_texts(texts)
            embs.append(e)
            tags += [name] * len(e)
            counts[name] = len(e)
        x = np.concatenate(embs)
        xy = TSNE(n_components=2, perplexity=min(30, max(5, len(x) // 10)), init="pca", random_state=seed).fit_transform(x)
        tags_arr = np.array(tags)
        for name in names:
            m = tags_arr == name
            ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.6, label=f"{name} ({m.sum()})", c=SET_COLORS.get(name, "gray"))
        ax.set_title(f"{kind} (scorer embeddings, t-SNE)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return counts


def _png_data_uri(gray: np.ndarray, scale: int = 4) -> str:
    img = Image.fromarray(gray).resize((gray.shape[1] * scale, gray.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _scores_text(row: pd.Series) -> str:
    parts = []
    for col in ("s_a", "s1", "s2", "s3"):
        v = row.get(col)
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            parts.append(f"{col} = {float(v):.3f}")
    return ", ".join(parts)


def gallery_html(branch: str, candidates: pd.DataFrame, pruned_dir: Path, real_images: dict[str, Path],
                 out: str | Path, n: int, seed: int, source_branch_images: dict[str, Path] | None = None) -> int:
    """Write one branch's gallery; returns the number of pairs shown (kept and pruned, sampled)."""
    rows = candidates[candidates["branch"] == branch]
    kept, dropped = rows[rows["kept"]], rows[~rows["kept"]]
    n_drop = min(len(dropped), max(n // 4, n - len(kept)))
    sample = pd.concat([kept.sample(n=min(len(kept), n - n_drop), random_state=seed),
                        dropped.sample(n=n_drop, random_state=seed)]).sort_values("pair_id")
    shown = [{"kept": r["kept"], "source_image": _png_data_uri(load_gray(real_images[r["source_pair_id"]])),
              "image": _png_data_uri(load_gray(pruned_dir / r["image"])),
              "source_branch_image": _png_data_uri(load_gray(source_branch_images[r["pair_id"]]))
              if source_branch_images and r["pair_id"] in source_branch_images else None,
              "source_report": str(r["source_report"]), "report": str(r["report"]),
              "reason": str(r.get("reason", "")), "scores": _scores_text(r), "pair_id": r["pair_id"]}
             for _, r in sample.iterrows()]
    page = render("pairaug.report", "gallery.html", branch=branch, total=len(rows), kept=int(rows["kept"].sum()),
                  rows=shown)
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return len(sample)
