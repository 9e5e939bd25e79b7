"""Synthetic data speed, per core: labels, inks, and whole samples written by train.build_data.build.

    .venv/bin/python tests/benchmarks/bench_synth.py [N]

Prints one JSON line. Rates are per CPU second of this one process (time.process_time), so they mean
"per core" even on a busy machine; glyph tracing is done before timing (a long run does it once).
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from train.build_data import build  # noqa: E402
from train.synth import synth_labels, synth_samples  # noqa: E402
from train.synth_ink import latex_to_ink, warm_glyphs  # noqa: E402


def per_cpu_second(n: int, work) -> float:
    start = time.process_time()
    work()
    return n / (time.process_time() - start)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    warm_glyphs()
    labels = []
    label_rate = per_cpu_second(n, lambda: labels.extend(synth_labels(n, seed=1)))

    def inks():
        import random

        for i, latex in enumerate(labels):
            latex_to_ink(latex, random.Random(i))

    ink_rate = per_cpu_second(n, inks)
    with tempfile.TemporaryDirectory() as out:
        wall = time.perf_counter()
        sample_rate = per_cpu_second(
            n, lambda: build(synth_samples(n, seed=2), out, "synth", workers=1, progress=False)
        )
        wall = time.perf_counter() - wall
    print(json.dumps({
        "bench": "synth",
        "n": n,
        "labels_per_cpu_s": round(label_rate, 1),
        "inks_per_cpu_s": round(ink_rate, 1),
        "samples_per_cpu_s": round(sample_rate, 1),  # label + ink + render + PNG + 3 task records
        "samples_wall_s": round(wall, 2),
        "target_samples_per_cpu_s": 100,
    }))


if __name__ == "__main__":
    main()
