"""The draw path end to end: CROHME training inks replayed on the app's sketchpad in headless Chromium.

    .venv/bin/python tests/benchmarks/bench_sketch_replay.py [--model DIR_OR_NAME] [--n 50] [--seed 0] [--out preds.json]

Starts `python app.py` with UNIMUMER_MODEL=--model (default: the bundled model), draws N training inks
(sampled with --seed) on `#sketch` as a person would (tests/replay.py), presses Recognize with the page's
defaults and reads the LaTeX box. Then the same N inks go through `Recognizer` as
`unimumer.ink.render_sketch` pages (cropped like a sketch, the search the app's defaults ask for), the
images the model is trained on. Prints one JSON line: the replayed ExpRate / <=1 / <=2 / edit score, the
rendered ones, the wall seconds per replayed ink (Clear, drawing, recognition) and how many inks the model
saw whole (`intact`: the ink box of its image has the drawn ink's aspect ratio). --out writes every ink's
ground truth and both answers.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# What app.py's Recognize asks for with the page's defaults (Alternatives slider 3, greedy, token scores on):
# the rendered images get the same search as the drawn ones.
APP_OPTIONS = {"alternatives": 3, "token_scores": True}


def replay_all(model: str, inks, log: Path) -> list:
    from playwright import sync_api

    from browser import open_page
    from replay import replay
    from test_app import serve_app
    from unimumer.ink import parse_inkml

    results, seen = [], None
    with serve_app(model, log) as (url, _), open_page(url, sync_api) as page:
        for ink in inks:
            result = replay(page, parse_inkml(ink.path), seen)
            results.append(result)
            seen = result.seen
    return results


def rendered_answers(model: str, inks) -> list[str]:
    import torch

    from unimumer.ink import parse_inkml, render_sketch
    from unimumer.recognizer import Recognizer

    torch.set_num_threads(1)
    recognizer = Recognizer.from_pretrained(model, device="cpu")
    return [recognizer.recognize(render_sketch(parse_inkml(ink.path)), crop=True, **APP_OPTIONS).latex for ink in inks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="folder or name of the model the app loads (default bundled)")
    parser.add_argument("--n", type=int, default=50, help="training inks replayed (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="which inks (default 0)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the data folder")
    parser.add_argument("--out", type=Path, help="write the per-ink answers here (JSON)")
    parser.add_argument("--log", type=Path, default=Path("/tmp/bench_sketch_replay_app.log"), help="the app's log")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from browser import CHROMIUM
    from replay import training_inks
    from unimumer.metrics import score

    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        print(json.dumps({"skipped": f"needs {CHROMIUM} and playwright (make test installs both)"}))
        return

    try:
        inks = training_inks(args.n, args.seed, args.data)
    except (OSError, ValueError) as error:
        print(json.dumps({"skipped": f"no CROHME training inks: {error}"}))
        return
    start = time.perf_counter()
    replayed = replay_all(args.model, inks, args.log)
    replay_seconds = time.perf_counter() - start
    rendered = rendered_answers(args.model, inks)
    records = [{"name": ink.name, "gt": ink.gt, "pred": r.latex, "rendered": latex, "seconds": round(r.seconds, 2),
                "intact": r.intact}
               for ink, r, latex in zip(inks, replayed, rendered)]
    drawn = score(records)
    image = score({"gt": r["gt"], "pred": r["rendered"]} for r in records)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({
        "benchmark": "sketch_replay", "model": args.model, "n": len(records), "seed": args.seed,
        "exprate": round(drawn["exprate"], 2), "le1": round(drawn["le1"], 2), "le2": round(drawn["le2"], 2),
        "edit_score": round(drawn["edit_score"], 2),
        "seconds_per_ink": round(replay_seconds / len(records), 2),
        "intact": sum(r["intact"] for r in records),  # inks whose every stroke reached the model (by extent)
        "rendered_exprate": round(image["exprate"], 2), "rendered_le1": round(image["le1"], 2),
        "rendered_le2": round(image["le2"], 2), "rendered_edit_score": round(image["edit_score"], 2),
    }))


if __name__ == "__main__":
    main()
