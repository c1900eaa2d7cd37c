"""The MLflow UI as a new user meets it: `pairaug ui` serves the repository's store on 127.0.0.1 and its
link opens the runs table (not MLflow 3's empty GenAI overview) with every mix's run and no "shared view"
banner, the saved view adds the key metrics, and the Prompts page lists the rewrite instructions; seen in
a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from conftest import pairaug_ui

from pairaug.tracking.ui import VIEW_NAME, prompts_url

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run tries it)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")


@pytest.fixture
def ui(tiny_repo, tmp_path):
    """`pairaug ui` on a copy of the tiny repository's store; yields the printed runs-table link."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("params.yaml", "dvc.yaml", "mlflow.db"):
        shutil.copy2(tiny_repo / name, repo / name)
    with pairaug_ui(repo, tmp_path / "ui.log", wait=180) as (_, url):
        yield url


@contextlib.contextmanager
def chromium_page():
    """A page of Debian's Chromium, headless, driven by Playwright (no browser download)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          "--disable-background-networking"])
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 800})
        finally:
            browser.close()


def test_the_ui_link_shows_every_mix_run(ui, tiny_repo, tmp_path):
    import yaml

    mixes = list(yaml.safe_load((tiny_repo / "params.yaml").read_text())["pretrain"]["mixes"])
    with chromium_page() as page:
        page.goto(ui)
        for mix in mixes:
            page.get_by_text(f"{mix}-seed0", exact=True).first.wait_for(timeout=90_000)
        assert "/runs" in page.url
        assert page.get_by_text("viewing a shared view").count() == 0
        page.screenshot(path=str(tmp_path / "runs.png"))
        # The saved view of the "Views" menu: the key metrics as columns.
        page.get_by_role("button", name="Views").click()
        page.get_by_text(VIEW_NAME, exact=True).first.click()
        page.get_by_text("zeroshot.mean_auc").first.wait_for(timeout=30_000)
    assert (tmp_path / "runs.png").stat().st_size > 10_000


def test_the_prompts_page_lists_the_rewrite_instructions(ui, tiny_repo):
    import yaml

    tasks = yaml.safe_load((tiny_repo / "params.yaml").read_text())["rewrite"]["tasks"]
    with chromium_page() as page:
        page.goto(prompts_url(ui.split("/#")[0]))
        for task in tasks:
            page.get_by_text(f"pairaug-rewrite-{task}", exact=True).first.wait_for(timeout=90_000)
        page.get_by_text("pairaug-rewrite-inter", exact=True).first.click()
        page.get_by_text("Following is an original chest X-ray report").first.wait_for(timeout=30_000)
