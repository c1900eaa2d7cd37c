"""The paper's qualitative figures: a t-SNE of real vs synthetic embeddings, and a gallery per branch.

The gallery is a self-contained HTML page per branch (images inlined): the source image and report
beside the synthetic image and its new report, with the pair's scores and whether pruning kept it —
the quickest way for a radiologist to judge what the pipeline made.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pairaug.data.images import load_gray
from pairaug.io import atomic_path
from pairaug.models.scorer import Scorer

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
    cells = []
    for _, r in sample.iterrows():
        src_img = _png_data_uri(load_gray(real_images[r["source_pair_id"]]))
        syn_img = _png_data_uri(load_gray(pruned_dir / r["image"]))
        extra = ""
        if source_branch_images and r["pair_id"] in source_branch_images:
            extra = (f'<figure><img src="{_png_data_uri(load_gray(source_branch_images[r["pair_id"]]))}">'
                     "<figcaption>source branch (same noise, original report)</figcaption></figure>")
        status = "kept" if r["kept"] else f"pruned: {html.escape(str(r.get('reason', '')))}"
        cells.append(
            f'<tr class="{"kept" if r["kept"] else "pruned"}"><td><figure><img src="{src_img}"><figcaption>real source</figcaption>'
            f'</figure></td><td class="report">{html.escape(str(r["source_report"]))}</td>'
            f'<td>{extra}<figure><img src="{syn_img}"><figcaption>{branch}</figcaption></figure></td>'
            f'<td class="report">{html.escape(str(r["report"]))}</td>'
            f"<td><b>{status}</b><br>{_scores_text(r)}<br><code>{r['pair_id']}</code></td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>pairaug gallery: {branch}</title>
<style>body{{font-family:sans-serif;margin:1em}} td{{vertical-align:top;padding:6px;border-bottom:1px solid #ddd}}
td.report{{max-width:22em;font-size:0.9em}} img{{image-rendering:pixelated}} figure{{margin:0 4px;display:inline-block}}
figcaption{{font-size:0.75em;color:#555}} tr.pruned{{background:#fff3f3}} tr.kept{{background:#f3fff3}}</style></head>
<body><h1>{branch}: {len(rows)} candidates, {int(rows['kept'].sum())} kept</h1>
<p>Each row: the real source pair, the synthetic pair made from it, the pruning scores and decision
(a sample of kept and pruned pairs).</p><table>
<tr><th>source image</th><th>source report</th><th>synthetic image</th><th>new report</th><th>scores</th></tr>
{''.join(cells)}</table></body></html>"""
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return len(sample)
