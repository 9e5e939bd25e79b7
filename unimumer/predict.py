"""Recognise handwritten-math images and write a predictions JSON.

Inputs are image or InkML files, or folders (searched recursively for .png .jpg .jpeg .bmp .gif .tif
.tiff .webp .inkml; an InkML file's ink is drawn as an image, as `Recognizer.recognize` does). The
output is a JSON list with one record per input:

  {"img_id": file stem, "image_path", "mode", "pred": LaTeX, "structured", "visual_tokens", "seconds",
   "tree" / "counts" / "candidate" / "marked" / "log" (the mode's extras), "warnings",
   "gt" (when --labels names the image), "model"}

An input that cannot be used gets {"error": "<one sentence>", "pred": ""} and the others still run.
With --labels the file goes straight into `python -m unimumer evaluate`. Re-running with the same
--out resumes: images already predicted with the same model and mode are kept.

Exit status: 0 all inputs recognised, 2 some inputs failed, 1 usage or model error.

Examples:
  python -m unimumer predict formula.png
  python -m unimumer predict crohme2014/ --labels caption.txt --batch-size 16 --out preds.json
  python -m unimumer evaluate preds.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from unimumer.decoding import DECODING, decoding_options
from unimumer.hub import DEFAULT_MODEL, ZOO
from unimumer.images import DEFAULT_MAX_PIXELS

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".inkml"}
MODES_HELP = "vanilla, tree, count or correct; combine with + (e.g. tree+count+correct)"
EXTRAS = ("tree", "counts", "candidate", "marked", "log")


class UsageError(ValueError):
    """A problem with the command line or its files; str(error) is one sentence."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or .inkml files, or folders of them")
    parser.add_argument(
        "--model",
        help=f"checkpoint folder, Hugging Face Hub id, 'bundled' or a short name of the released models "
        f"({', '.join(ZOO)}) (default: $UNIMUMER_MODEL, else {DEFAULT_MODEL})",
    )
    parser.add_argument("--mode", default="vanilla", help=f"{MODES_HELP} (default vanilla)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per generate call (default 8)")
    parser.add_argument(
        "--max-pixels", type=int, default=None,
        help=f"cap on the model input area (default: the model's training resolution, "
        f"at most {DEFAULT_MAX_PIXELS} = 512x512)",
    )
    parser.add_argument(
        "--sketch", action="store_true",
        help="the images are mostly empty drawing canvases: crop each to its ink first (default: send them "
        "whole, only scaled to the cap, as the released models were trained; a model this kit trained on "
        "crops gets crops)",
    )
    parser.add_argument("--labels", type=Path, help="ground truth: an id<TAB>LaTeX caption file or a predictions JSON")
    parser.add_argument("--out", type=Path, help="write the JSON list here (default: standard output)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    parser.add_argument(
        "--dtype", default="auto", help="float32, bfloat16, ... (default: bfloat16 on CUDA, else float32)"
    )
    add_decoding_arguments(parser)
    parser.add_argument(
        "--backend", choices=("transformers", "vllm"), default="transformers",
        help="transformers (default, CPU or GPU) or vllm (optional extra, GPU only)",
    )
    parser.add_argument("--no-resume", action="store_true", help="recompute images already in --out")
    parser.set_defaults(run=run)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """--decoding, --max-new-tokens and --sample (shared with train.evaluate)."""
    parser.add_argument(
        "--decoding", choices=list(DECODING), default="greedy",
        help="greedy (default) or paper: upstream's evaluation (sampling at temperature 0.2, top-p 0.8, "
        "top-k 50, up to 2048 new tokens per pass)",
    )
    parser.add_argument("--max-new-tokens", type=int, help="cap on generated tokens per pass (default: per mode)")
    parser.add_argument(
        "--sample", action="store_true", help="sample (temperature 0.2, top-p 0.8, top-k 50) instead of greedy"
    )


def decoding(args: argparse.Namespace) -> dict:
    """GenerationOptions fields of the command line: the --decoding preset, then the explicit flags."""
    return decoding_options(args.decoding, max_new_tokens=args.max_new_tokens, do_sample=args.sample or None)


def run(args: argparse.Namespace) -> int:
    try:
        return _predict(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from unimumer.hub import ModelLoadError

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1.")
    inputs = list(expand_inputs(args.inputs))
    if not inputs:
        raise UsageError("No images found in " + ", ".join(args.inputs) + ".")
    labels = read_labels(args.labels) if args.labels else None
    try:
        from unimumer.recognizer import normalize_modes

        mode = "+".join(normalize_modes(args.mode))  # before the (slow) model load
        recognizer = load_recognizer(args)
    except (ModelLoadError, ValueError) as error:
        raise UsageError(str(error)) from None
    if recognizer.notice:
        print(recognizer.notice, file=sys.stderr)

    done = {} if args.no_resume else finished_records(args.out, mode, recognizer.model_name)
    if done:
        print(f"Resuming: {len(done)} of {len(inputs)} images are already in {args.out}.", file=sys.stderr)
    records: dict[str, dict] = {}
    todo = []
    for path, problem in inputs:
        key = str(path)
        if key in done:
            records[key] = dict(done[key])
            gt = _label(labels, path.stem)
            if gt is not None:
                records[key]["gt"] = gt
        elif problem:
            records[key] = _record(path, mode, labels, recognizer.model_name, error=problem)
        else:
            todo.append(path)
    options = dict(decoding(args), crop=args.sketch or None)
    chunk = args.batch_size * 4  # results are saved after each chunk
    with tqdm(total=len(inputs), initial=len(inputs) - len(todo), unit="img", file=sys.stderr) as bar:
        for start in range(0, len(todo), chunk):
            paths = todo[start : start + chunk]
            for path, result in zip(paths, _recognize(recognizer, paths, mode, args.batch_size, options)):
                records[str(path)] = _record(path, mode, labels, recognizer.model_name, result=result)
            _save([records[str(p)] for p, _ in inputs if str(p) in records], args.out)
            bar.update(len(paths))
    ordered = [records[str(path)] for path, _ in inputs]
    if args.out is None:
        json.dump(ordered, sys.stdout, indent=1, ensure_ascii=False)
        print()
    else:
        _save(ordered, args.out)
    failed = sum("error" in r for r in ordered)
    if labels is not None:
        unlabelled = sum("gt" not in r for r in ordered)
        if unlabelled:
            print(f"{unlabelled} images have no label in {args.labels}; their records have no gt.", file=sys.stderr)
    print(
        f"Recognised {len(ordered) - failed} of {len(ordered)} images"
        + (f"; {failed} failed (see their error field)." if failed else "."),
        file=sys.stderr,
    )
    return 2 if failed else 0


def load_recognizer(args: argparse.Namespace):
    """The Recognizer of the chosen backend (ModelLoadError when it cannot be loaded)."""
    import transformers

    transformers.logging.set_verbosity_error()
    if args.backend == "vllm":
        from unimumer.vllm_backend import VllmRecognizer

        return VllmRecognizer.from_pretrained(args.model, max_pixels=args.max_pixels)
    from unimumer.recognizer import Recognizer

    return Recognizer.from_pretrained(args.model, device=args.device, dtype=args.dtype, max_pixels=args.max_pixels)


def _recognize(recognizer, paths: list[Path], mode: str, batch_size: int, options: dict) -> list:
    """Results for `paths`. If a batch fails as a whole, each image is retried alone, so an input that
    breaks recognition costs only its own record (one sentence, never a traceback)."""
    try:
        return recognizer.recognize_batch(paths, mode, batch_size, raise_errors=False, **options)
    except Exception as error:  # noqa: BLE001 - isolated below
        if len(paths) == 1:
            from unimumer.recognizer import RecognitionResult

            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return [RecognitionResult("", mode, structured=False, error=f"Recognition failed: {reason}")]
    return [result for path in paths for result in _recognize(recognizer, [path], mode, 1, options)]


def expand_inputs(inputs: list[str]):
    """(path, problem) for each image: files as given, folders searched recursively by extension."""
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS:
                    yield child, None
        elif path.is_file():
            yield path, None
        else:
            yield path, f"{name} does not exist."


def read_labels(path: Path) -> dict[str, str]:
    """img_id -> ground truth from an `id<TAB>latex` caption file or a predictions JSON / JSONL."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"Cannot read the labels file {path}.") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            try:
                data = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError:
                raise UsageError(f"The labels file {path} is not valid JSON.") from None
        data = [data] if isinstance(data, dict) else data
        records = [r for r in data if isinstance(r, dict) and "img_id" in r and isinstance(r.get("gt"), str)]
        labels = {str(r["img_id"]): r["gt"] for r in records}
    else:
        labels = {}
        for line in text.splitlines():
            key, tab, latex = line.partition("\t")
            if tab and key.strip():
                labels[key.strip()] = latex.strip()
    if not labels:
        raise UsageError(f"No labels found in {path}; expected id<TAB>LaTeX lines or [{{img_id, gt}}] JSON.")
    return labels


def _label(labels: dict[str, str] | None, img_id: str) -> str | None:
    if labels is None:
        return None
    if img_id in labels:
        return labels[img_id]
    # CROHME 2016 bitmaps are named <InkML stem>_0
    return labels.get(img_id[:-2]) if img_id.endswith("_0") else None


def result_fields(result) -> dict:
    """The prediction-record fields of a successful RecognitionResult (shared with train.evaluate):
    pred, structured, visual_tokens, seconds, the mode's extras that ran, and warnings when any."""
    data = result.to_dict()
    fields = {"pred": data["latex"], "structured": data["structured"], "visual_tokens": data["visual_tokens"],
              "seconds": data["seconds"]}
    fields.update({key: data[key] for key in EXTRAS if data[key] is not None})
    if data["warnings"]:
        fields["warnings"] = data["warnings"]
    return fields


def _record(path: Path, mode: str, labels, model: str, result=None, error: str | None = None) -> dict:
    record = {"img_id": path.stem, "image_path": str(path), "mode": mode}
    if error is None and result.error:
        error = result.error
    record.update({"pred": "", "error": error} if error is not None else result_fields(result))
    gt = _label(labels, path.stem)
    if gt is not None:
        record["gt"] = gt
    record["model"] = model
    return record


def finished_records(out: Path | None, mode: str, model: str) -> dict[str, dict]:
    """Finished records of an earlier run into the same --out file (same model and mode), by image path."""
    if out is None or not out.is_file():
        return {}
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, list):
        return {}
    return {
        r["image_path"]: r
        for r in data
        if isinstance(r, dict) and "error" not in r and r.get("mode") == mode and r.get("model") == model
        and "image_path" in r
    }


def _save(records: list[dict], out: Path | None) -> None:
    """Atomic write: a crash never leaves a half-written predictions file."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=out.parent, suffix=".tmp", delete=False) as f:
        json.dump(records, f, indent=1, ensure_ascii=False)
    os.replace(f.name, out)
