"""Benchmark: `prepare` on a generic-CSV input of many small generated PNGs.

Measures throughput (images/s) and the peak memory of the whole process tree (this process and its
pool workers), and fails (exit 1) when the peak reaches the budget (default 1 GiB).

    python benchmarks/bench_prepare.py                 # 20,000 images: throughput and peak memory
    python benchmarks/bench_prepare.py --n 2000        # a quick look

Peak memory is reported two ways: the sampled sum of the RSS of the process and its children (an upper
bound: pages shared between the forked workers and the parent count once per process), and the
kernel's own high-water marks from getrusage (the largest single process: parent or any child).
Everything is written under a temporary folder that is removed afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from pairaug.data.prepare import CsvConfig, DataConfig, prepare

REPORTS = (
    "FINDINGS: Heart size is normal. No focal consolidation, pleural effusion or pneumothorax. "
    "IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Moderate cardiomegaly. Small bilateral pleural effusions. IMPRESSION: Cardiomegaly and effusions.",
    "FINDINGS: Patchy opacity in the right lower lobe. IMPRESSION: Cannot exclude pneumonia.",
    "FINDINGS: The lungs are clear. There is no pneumothorax. IMPRESSION: Normal chest radiograph.",
    "FINDINGS: Mild pulmonary edema. Left basilar atelectasis. IMPRESSION: Mild edema, possible small effusion.",
)


def _write_images(args: tuple[Path, int, int, int]) -> None:
    """Worker: write images [start, stop) as small gray PNGs with a little structure and noise."""
    folder, start, stop, side = args
    yy, xx = np.mgrid[0:side, 0:side]
    base = 60 + 120 * (np.abs(xx - side / 2) < side / 8) + 40 * yy / side
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i % 100:02d}" / f"img{i:06d}.png"
        Image.fromarray(pixels).save(path)


def make_dataset(root: Path, n: int, side: int, workers: int) -> Path:
    """n PNGs of side×side px in 100 subfolders + pairs.csv (image, patient_id, view, report)."""
    images = root / "images"
    for k in range(100):
        (images / f"{k:02d}").mkdir(parents=True, exist_ok=True)
    step = 500
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_images, [(images, s, min(s + step, n), side) for s in range(0, n, step)]))
    csv = root / "pairs.csv"
    with open(csv, "w", encoding="utf-8") as f:
        f.write("image,patient_id,view,report\n")
        for i in range(n):
            # About 1.6 images per patient, as in real datasets with follow-up studies.
            f.write(f'images/{i % 100:02d}/img{i:06d}.png,pt{(i * 5) // 8:06d},PA,"{REPORTS[i % len(REPORTS)]}"\n')
    return csv


class PeakTreeRss:
    """Samples the summed RSS of this process and all its descendants in a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self.peak_procs = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process(os.getpid())

    def _sample(self) -> None:
        procs = [self._me, *self._me.children(recursive=True)]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                total += p.memory_info().rss
        if total > self.peak:
            self.peak, self.peak_procs = total, len(procs)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakTreeRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="number of images (default 20000)")
    ap.add_argument("--side", type=int, default=64, help="side of the generated source PNGs in px (default 64)")
    ap.add_argument("--image-size", type=int, default=32, help="data.image_size (default 32)")
    ap.add_argument("--workers", type=int, default=2, help="data.workers (default 2)")
    ap.add_argument("--chunk-size", type=int, default=256, help="data.chunk_size (default 256)")
    ap.add_argument("--budget-mib", type=float, default=1024, help="fail when peak memory reaches this (default 1024)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated input and output")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        csv = make_dataset(work / "input", args.n, args.side, args.workers)
        gen_s = time.perf_counter() - t0
        cfg = DataConfig(source="csv", image_size=args.image_size, workers=args.workers, chunk_size=args.chunk_size,
                         csv=CsvConfig(path=str(csv)))
        with PeakTreeRss() as mem:
            t0 = time.perf_counter()
            df = prepare(cfg, 0, work / "prepared")
            elapsed = time.perf_counter() - t0
        assert len(df) == args.n, f"prepared {len(df)} pairs, expected {args.n}"
        self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result = {
            "images": args.n,
            "source_px": args.side,
            "image_size": args.image_size,
            "workers": args.workers,
            "cpu_count": os.cpu_count(),
            "generate_s": round(gen_s, 1),
            "prepare_s": round(elapsed, 2),
            "images_per_s": round(args.n / elapsed, 1),
            "peak_tree_rss_mib": round(mem.peak / 2**20, 1),
            "peak_tree_processes": mem.peak_procs,
            "maxrss_self_mib": round(self_kib / 1024, 1),
            "maxrss_largest_child_mib": round(child_kib / 1024, 1),
            "budget_mib": args.budget_mib,
        }
        print(json.dumps(result, indent=2))
        peak_mib = max(mem.peak / 2**20, (self_kib + child_kib) / 1024)
        if peak_mib >= args.budget_mib:
            print(f"FAIL: peak memory {peak_mib:.0f} MiB >= budget {args.budget_mib:.0f} MiB", file=sys.stderr)
            return 1
        print(f"OK: {result['images_per_s']} images/s, peak memory {peak_mib:.0f} MiB < {args.budget_mib:.0f} MiB")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
