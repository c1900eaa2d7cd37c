"""The reports are rendered from Jinja2 templates (report/templates, quality/templates): the committed
metrics/ablation.md is what its template gives for the JSON beside it; the datasheet and the galleries keep
their layout and escaping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pairaug.quality.datasheet import render
from pairaug.report.ablation import ReportConfig, ablation_markdown
from pairaug.report.figures import gallery_html

REPO = Path(__file__).resolve().parents[1]


def test_the_ablation_markdown_is_its_json_rendered() -> None:
    """metrics/ablation.md holds exactly the lines the template gives for metrics/ablation.json (whose keys are
    sorted when written, so the mixes come in another order)."""
    report = json.loads((REPO / "metrics/ablation.json").read_text())
    cfg = ReportConfig(bootstrap_resamples=report["settings"]["bootstrap_resamples"], ci=report["settings"]["ci"])
    text = ablation_markdown(report, cfg, report["missing_mixes"])
    committed = (REPO / "metrics/ablation.md").read_text()
    assert sorted(text.splitlines()) == sorted(committed.splitlines()) and text.endswith("|\n")


def test_a_datasheet_without_the_memorisation_check_says_so() -> None:
    sheet = json.loads((REPO / "metrics/datasheet.json").read_text())
    sheet["memorisation"], sheet["quality_gate"]["failures"] = {}, ["expect_x: 2 pairs"]
    text = render(sheet)
    assert "The memorisation check did not run (metrics/privacy.json is missing).\n\n## 8. Quality gate" in text
    assert "failed.\n- expect_x: 2 pairs\n\n## 9." in text and text.endswith("agreement allows.\n")


def test_the_gallery_escapes_report_text_and_shows_each_sampled_pair(tmp_path: Path) -> None:
    rows = []
    for i in range(4):
        for name in (f"r{i}.png", f"s{i}.png"):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / name)
        rows.append({"pair_id": f"p{i}", "branch": "inter", "source_pair_id": f"src{i}", "image": f"s{i}.png",
                     "kept": i % 2 == 0, "reason": "s_a 0.1000 <= tau 0.3000" if i % 2 else "kept",
                     "source_report": f'Report {i} <b>"x"</b> & \'y\'', "report": f"New <{i}>",
                     "s_a": 0.1 * i, "s1": np.nan, "s2": np.nan, "s3": np.nan})
    out = tmp_path / "gallery.html"
    shown = gallery_html("inter", pd.DataFrame(rows), tmp_path, {f"src{i}": tmp_path / f"r{i}.png" for i in range(4)},
                         out, 4, 0)
    page = out.read_text()
    assert shown == 4 and page.count("<tr class=") == 4 and page.count('<tr class="pruned">') == 2
    assert "<h1>inter: 4 candidates, 2 kept</h1>" in page
    assert "Report 0 &lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#x27;y&#x27;" in page and "New &lt;3&gt;" in page
    assert "<b>pruned: s_a 0.1000 &lt;= tau 0.3000</b><br>s_a = 0.100<br><code>p1</code>" in page
    assert page.endswith("</table></body></html>")
