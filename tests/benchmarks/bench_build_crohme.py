"""Benchmark: build all CROHME training inks (vanilla, tree, count) with the default worker count.

    .venv/bin/python tests/benchmarks/bench_build_crohme.py [--workers N] [--limit N] [--keep DIR]

Prints one JSON line: inks, kept, wall seconds, inks/s, CPU seconds (all processes), peak RSS of the main
process and of the largest worker (MB; their sum over all processes is at most main + workers x worker),
and the seconds of a second, resuming run (which should find nothing to do).
Target: 8,836 inks in <= 60 s wall (15 s aim) with <= 2 GB peak RSS on the project's 2-core machine.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from train.build_data import build, default_workers  # noqa: E402
from train.readers import read_source  # noqa: E402

INKS = ROOT.parent / "shared" / "data" / "crohme" / "inkml" / "train"


def cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--limit", type=int)
    parser.add_argument("--keep", help="build into this folder (default: a temporary one)")
    args = parser.parse_args()
    if not INKS.exists():
        print(json.dumps({"skipped": f"{INKS} is absent"}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        cpu, start = cpu_seconds(), time.perf_counter()
        stats = build(read_source("crohme", INKS), out, "crohme", workers=args.workers, limit=args.limit,
                      progress=False)
        wall = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
        start = time.perf_counter()
        build(read_source("crohme", INKS), out, "crohme", workers=args.workers, limit=args.limit, progress=False)
        rerun = time.perf_counter() - start
    main_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest worker
    print(json.dumps({
        "bench": "build_crohme", "inks": stats["inputs"], "kept": stats["kept"], "workers": args.workers,
        "tasks": stats["tasks"], "wall_s": round(wall, 2), "inks_per_s": round(stats["inputs"] / wall, 1),
        "cpu_s": round(cpu, 2), "cpu_ms_per_ink": round(1000 * cpu / stats["inputs"], 2),
        "peak_rss_mb_main": round(main_kb / 1024, 1), "peak_rss_mb_worker": round(worker_kb / 1024, 1),
        "peak_rss_mb_total_bound": round((main_kb + args.workers * worker_kb) / 1024, 1), 
        "rerun_s": round(rerun, 2), "load_avg_1m": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
