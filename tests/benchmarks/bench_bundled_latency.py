"""What a CPU user waits for the bundled model: seconds per expression, one at a time, vanilla (greedy).

    .venv/bin/python tests/benchmarks/bench_bundled_latency.py [--model bundled] [--images 50] [--threads 1] \
        [--dtype float32|bfloat16]

Prints one JSON line: the median and 90th percentile of `Recognizer.recognize` wall time per image
(image preparation, processor, encoder, decoding until the end of the answer), the mean number of
output tokens, and the threads used. Images are CROHME 2014 inks drawn as the app's sketchpad page
(`unimumer.ink.render_sketch`, cropped like a sketch) when ../shared/data is present, else the images
in examples/. The first image is a warm-up and is not counted. On a shared machine other processes only
add time, so each image's fastest of `--repeats` runs counts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
INK = ROOT.parent / "shared" / "data" / "crohme" / "inkml" / "2014"


def inputs(n: int) -> tuple[list, str]:
    if INK.is_dir():
        from unimumer.ink import parse_inkml, render_sketch

        return [render_sketch(parse_inkml(p)) for p in sorted(INK.glob("*.inkml"))[: n + 1]], "crohme2014 sketches"
    return sorted(str(p) for p in (ROOT / "examples").glob("*.png"))[: n + 1], "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="model to time (default: the bundled one)")
    parser.add_argument("--images", type=int, default=50, help="images timed (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the tests run)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per image; the fastest counts (default 2)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="weights as loaded (default float32, the CPU default; bfloat16 pays off with AMX)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from unimumer.recognizer import Recognizer

    torch.set_num_threads(args.threads)
    recognizer = Recognizer.from_pretrained(args.model, device="cpu", dtype=getattr(torch, args.dtype))
    images, source = inputs(args.images)
    crop = source != "examples" or None  # sketches are cropped; files as the model's recipe says
    recognizer.recognize(images[0], crop=crop)  # warm-up
    seconds, tokens = [], []
    for image in images[1:]:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = recognizer.recognize(image, crop=crop)
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
        tokens.append(len(recognizer.processor.tokenizer(result.raw["vanilla"])["input_ids"]))
    seconds.sort()
    print(json.dumps({
        "benchmark": "bundled_latency", "model": recognizer.model_name, "architecture": type(recognizer.model).__name__,
        "images": len(seconds), "source": source, "threads": args.threads, "dtype": args.dtype,
        "median_s": round(statistics.median(seconds), 4), "p90_s": round(seconds[int(0.9 * (len(seconds) - 1))], 4),
        "mean_output_tokens": round(statistics.mean(tokens), 1),
    }))


if __name__ == "__main__":
    main()
