"""Seconds to score mathwriting_test_pred.json (7,644 records), as `python -m unimumer evaluate` does.

Run: .venv/bin/python tests/benchmarks/bench_evaluate.py [--data ../shared/data] [--repeat 3]
Prints one JSON line: loading and scoring times (best of --repeat) and the metrics themselves.
The one-off nltk import (seconds on a busy machine) is reported separately.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from unimumer.metrics import load_predictions, score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the reference data folder")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    path = args.data / "reference_preds" / "mathwriting_test_pred.json"
    if not path.exists():
        print(json.dumps({"skipped": f"{path} not found"}))
        return
    start = time.perf_counter()
    import nltk.translate.bleu_score  # noqa: F401  (the lazy import `score` would otherwise pay once)
    nltk_import = time.perf_counter() - start
    load_times, score_times = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        records = load_predictions(path)
        load_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        metrics = score(records)
        score_times.append(time.perf_counter() - start)
    print(json.dumps({
        "benchmark": "evaluate",
        "file": path.name,
        "records": len(records),
        "load_s": round(min(load_times), 3),
        "score_s": round(min(score_times), 3),
        "evaluate_s": round(min(load_times) + min(score_times), 3),
        "nltk_import_s": round(nltk_import, 3),
        "metrics": {k: v if k == "n" else round(v, 4) for k, v in metrics.items()},
    }))


if __name__ == "__main__":
    main()
