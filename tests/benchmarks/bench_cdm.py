"""Seconds to score CDM of crohme_2014_pred.json (986 pairs) from nothing cached, as `evaluate --cdm` does.

Run: .venv/bin/python tests/benchmarks/bench_cdm.py [--data ../shared/data] [--workers 2] [--file NAME]
Prints one JSON line: the cold time (every formula rendered), the warm time (all from the cache),
CDM F1 and ExpRate@CDM. The target is 60 s cold on two cores (issue 23).
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

from unimumer.cdm import cdm_score  # noqa: E402
from unimumer.metrics import load_predictions  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the reference data folder")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2, this machine's cores)")
    parser.add_argument("--file", default="crohme_2014_pred.json", help="reference predictions file name")
    args = parser.parse_args()
    path = args.data / "reference_preds" / args.file
    if not path.exists():
        print(json.dumps({"skipped": f"{path} not found"}))
        return
    records = load_predictions(path)
    with tempfile.TemporaryDirectory(prefix="bench-cdm-") as cache:
        start = time.perf_counter()
        summary, _ = cdm_score(records, workers=args.workers, cache_dir=Path(cache))
        cold = time.perf_counter() - start
        start = time.perf_counter()
        cdm_score(records, workers=args.workers, cache_dir=Path(cache))
        warm = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "cdm",
        "file": path.name,
        "records": len(records),
        "workers": args.workers,
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "target_s": TARGET_S,
        "within_target": cold <= TARGET_S,
        "cdm_f1": round(summary["cdm_f1"], 4),
        "exprate_cdm": round(summary["exprate_cdm"], 2),
        "cdm_failed": summary["cdm_failed"],
    }))


if __name__ == "__main__":
    main()
