"""How fast `pairaug review` serves a page of pairs on a workspace (the default one: run `dvc repro` first).

    python benchmarks/bench_review.py                 # 50 pairs a page, server render and browser load
    python benchmarks/bench_review.py --per-page 50 --repeats 30 --no-browser

Prints measured times, asserts nothing: the app runs under uvicorn on a loopback port (as `pairaug review`
runs it) and every page is fetched over HTTP. `render` is the HTML of one page of `--per-page` pairs from
request to last byte (filters, decisions file read, template), for the first page and a page in the
middle; `browser` is Chromium's load of the first page with all its images (Debian's package through
Playwright), from navigation to the `load` event and the images on screen decoded (those below the
fold load lazily as the reviewer scrolls).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path

from pairaug.paths import repo_root
from pairaug.review.app import create_app
from pairaug.review.workspace import Workspace


def _fetch(port: int, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()  # to the last byte
    elapsed = time.perf_counter() - start
    conn.close()
    assert resp.status == 200, (resp.status, path)
    return elapsed


def _stats(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} runs)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=None, help="the workspace (default: this repository)")
    ap.add_argument("--per-page", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium page load")
    args = ap.parse_args()
    import uvicorn

    root = (args.root or repo_root()).resolve()
    start = time.perf_counter()
    ws = Workspace(root)
    load = time.perf_counter() - start
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ws, "bench", args.per_page), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        pages = -(-len(ws.cands) // args.per_page)
        print(f"workspace {root}: {len(ws.cands)} candidates ({', '.join(ws.branches)}), loaded in {load * 1000:.0f} ms")
        _fetch(port, "/pairs")  # warm: templates compiled once per process
        first = [_fetch(port, f"/pairs?per_page={args.per_page}") for _ in range(args.repeats)]
        middle = [_fetch(port, f"/pairs?per_page={args.per_page}&page={max(1, pages // 2)}")
                  for _ in range(args.repeats)]
        filtered = [_fetch(port, f"/pairs?per_page={args.per_page}&branch=intra&status=dropped&score=s1&min=0")
                    for _ in range(args.repeats)]
        print(f"render, page 1 of {pages} ({args.per_page} pairs): {_stats(first)}")
        print(f"render, page {max(1, pages // 2)} of {pages}: {_stats(middle)}")
        print(f"render, filtered (intra, dropped, s1 >= 0): {_stats(filtered)}")
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        if not args.no_browser and Path(chromium).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
                loads = []
                for _ in range(max(3, args.repeats // 4)):
                    page = browser.new_page(viewport={"width": 1500, "height": 1000})  # a fresh cache each time
                    start = time.perf_counter()
                    page.goto(f"http://127.0.0.1:{port}/pairs?per_page={args.per_page}", wait_until="load")
                    # Images load lazily: those on screen are what the reviewer sees first.
                    page.wait_for_function("Array.from(document.images).filter(i => i.closest('#cards') && "
                                           "i.getBoundingClientRect().top < innerHeight).every(i => i.complete)")
                    loads.append(time.perf_counter() - start)
                    images = page.evaluate("document.images.length")
                    page.close()
                browser.close()
            print(f"browser, page 1 ({images} images, lazy below the fold) to load + on-screen images: {_stats(loads)}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
