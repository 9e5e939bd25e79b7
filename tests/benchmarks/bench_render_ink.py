"""Ink rendering throughput: parse InkML + render + write a PNG, on one core.

Run: .venv/bin/python tests/benchmarks/bench_render_ink.py [--limit N] [--mode L|RGB] [--compress-level 1]
Goes over the CROHME training inks (8,836; all unless --limit) and prints one JSON line: inks per second
and wall / CPU milliseconds per ink, with the CPU time split into parse, render and PNG write (the CPU
figures are steadier than wall time on a shared machine). The PNGs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from unimumer.ink import InkError, parse_inkml, render_ink  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the reference data folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N inks (default: all)")
    parser.add_argument("--height", type=int, default=128, help="rendered expression height in pixels")
    parser.add_argument("--mode", choices=("L", "RGB"), default="L", help="image mode written (default L)")
    parser.add_argument("--compress-level", type=int, default=1, help="PNG zlib level 0-9 (default 1: fast)")
    args = parser.parse_args()

    files = sorted((args.data / "crohme" / "inkml" / "train").rglob("*.inkml"))[: args.limit]
    if not files:
        print(json.dumps({"skipped": f"no CROHME training ink under {args.data}"}))
        return
    cpu = {"parse": 0.0, "render": 0.0, "png": 0.0}
    failed, pixels = 0, 0
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        for i, path in enumerate(files):
            t0 = time.process_time()
            try:
                ink = parse_inkml(path)
            except InkError:
                failed += 1
                continue
            t1 = time.process_time()
            image = render_ink(ink, height=args.height, mode=args.mode)
            t2 = time.process_time()
            image.save(Path(out) / f"{i}.png", compress_level=args.compress_level)
            t3 = time.process_time()
            cpu["parse"] += t1 - t0
            cpu["render"] += t2 - t1
            cpu["png"] += t3 - t2
            pixels += image.width * image.height
        wall = time.perf_counter() - start
    done = len(files) - failed
    print(json.dumps({
        "benchmark": "render_ink",
        "inks": len(files),
        "failed": failed,
        "mode": args.mode,
        "compress_level": args.compress_level,
        "seconds": round(wall, 2),
        "inks_per_s": round(len(files) / wall, 1),
        "ms_per_ink": round(1000 * wall / len(files), 3),
        "cpu_ms_per_ink": round(1000 * sum(cpu.values()) / max(done, 1), 3),
        **{f"{stage}_cpu_ms": round(1000 * t / max(done, 1), 3) for stage, t in cpu.items()},
        "mean_pixels": round(pixels / max(done, 1)),
    }))


if __name__ == "__main__":
    main()
