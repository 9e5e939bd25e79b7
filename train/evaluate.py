"""Evaluate a checkpoint on a built test set: recognise its images, write predictions, print the metrics.

    python -m train.evaluate --model runs/tiny-cpu --data data/crohme2014 --out preds.json
    python -m train.evaluate --data data/crohme2014/crohme2014_vanilla.jsonl --out preds.json --limit 100

--data is a folder built by `python -m train.build_data` (its *_vanilla.jsonl records are used) or one
JSONL file of ShareGPT records (the ground truth is the last line of each target, so any task's file
works). Predictions are written as a JSON list of {img_id, image_path, gt, pred, mode, model, ...},
saved after every chunk; running the same command again skips the images already in --out. The
metrics printed are those of `python -m unimumer evaluate PRED.json`, which scores the file the same way;
--cdm adds CDM F1 and ExpRate@CDM, as `evaluate --cdm` does (needs pdflatex and gs).
Without --model, unimumer's default model is used ($UNIMUMER_MODEL, else unimumer.hub.DEFAULT_MODEL).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.dataset import RecordError, data_files, read_jsonl, target_latex
from train.records import write_json
from unimumer.predict import add_decoding_arguments, decoding, result_fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint folder, Hub id, 'bundled' or a short name such as qwen3.5-2b "
                        "(default: unimumer's default model)")
    parser.add_argument("--data", required=True, type=Path, help="built data folder or a ShareGPT JSONL file")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSON to write (resumed if present)")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--mode", default="vanilla",
                        help="vanilla, tree, count or correct, combined with + (default vanilla)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per generate call (default 8)")
    parser.add_argument("--cdm", action="store_true",
                        help="also print CDM F1 and ExpRate@CDM (UniMERNet's visual metric; needs pdflatex and gs)")
    add_decoding_arguments(parser)
    parser.add_argument("--sketch", action="store_true",
                        help="crop each image to its ink first, as sketches are (default: whole, like uploads, "
                        "unless the model was trained on crops)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="image area cap (default: the model's training resolution, at most 512*512)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    parser.add_argument("--dtype", default="auto",
                        help="float32, bfloat16, ... (default: bfloat16 on CUDA, else float32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be at least 1.")
    return args


def vanilla_items(data: Path, limit: int | None = None) -> list[dict]:
    """{img_id, image_path, gt} per distinct image of the vanilla records (or of the given JSONL file)."""
    items = {}
    for path in data_files([data], suffix="_vanilla.jsonl"):
        for example in read_jsonl(path):
            key = str(example.image)
            if key not in items:
                items[key] = {"img_id": example.image.stem, "image_path": key, "gt": target_latex(example.target)}
    return list(items.values())[:limit]


def prediction(item: dict, result, mode: str, model: str) -> dict:
    record = {**item, "mode": mode, "model": model}
    if result.error:
        return {**record, "pred": "", "error": result.error}
    return {**record, **result_fields(result)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from unimumer.hub import ModelLoadError
    from unimumer.cdm import RendererMissing
    from unimumer.metrics import add_cdm, format_table, score
    from unimumer.predict import finished_records
    from unimumer.recognizer import Recognizer, normalize_modes

    try:
        items = vanilla_items(args.data, args.limit)
        mode = "+".join(normalize_modes(args.mode))
        recognizer = Recognizer.from_pretrained(
            args.model, device=args.device, dtype=args.dtype, max_pixels=args.max_pixels
        )
    except (RecordError, ModelLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not items:
        print(f"error: {args.data} has no records.", file=sys.stderr)
        return 1
    if recognizer.notice:
        print(recognizer.notice, file=sys.stderr)

    done = finished_records(args.out, mode, recognizer.model_name)
    records = {item["image_path"]: done[item["image_path"]] for item in items if item["image_path"] in done}
    todo = [item for item in items if item["image_path"] not in records]
    if records:
        print(f"Resuming: {len(records)} of {len(items)} images are already in {args.out}.", file=sys.stderr)
    options = dict(decoding(args), crop=args.sketch or None)
    chunk = args.batch_size * 4  # predictions are saved after each chunk
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(items), initial=len(records), unit="img", file=sys.stderr) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            paths = [item["image_path"] for item in part]
            results = recognizer.recognize_batch(paths, mode, args.batch_size, raise_errors=False, **options)
            for item, result in zip(part, results):
                records[item["image_path"]] = prediction(item, result, mode, recognizer.model_name)
            write_json(args.out, [records[i["image_path"]] for i in items if i["image_path"] in records])
            bar.update(len(part))
    ordered = [records[item["image_path"]] for item in items]
    write_json(args.out, ordered)
    metrics = score(ordered)
    if args.cdm:
        try:
            metrics = add_cdm(metrics, ordered)
        except RendererMissing as error:
            print(f"error: {error}", file=sys.stderr)
    print(format_table(str(args.out), metrics))
    failed = sum("error" in r for r in ordered)
    if failed:
        print(f"{failed} images could not be read (see their error field); they count as wrong.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
