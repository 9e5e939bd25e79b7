"""Error-driven learning (EDL) data: the model's own mistakes as error_find and error_fix records.

    # from an existing predictions file ([{gt, pred, image_path, img_id}], e.g. `unimumer predict` output)
    python -m train.error_corpus --from-predictions preds.json --out data/edl [--images-root R]

    # the paper's cross-fold loop over a built data folder
    python -m train.error_corpus --data data/crohme --folds 3 --samples 4 --temperature 1.0 \\
        --config train/configs/tiny-cpu.yaml --max_steps 20 --out data/edl

Every wrong prediction (its tokens differ from the ground truth's) gives one error_find record (prompt: the
candidate; target: the candidate with error tags) and one error_fix record (prompt: the marked candidate;
target: the correction log, then the truth). Each pair is checked before it is written: applying the log
to the marked formula must give the truth. Output: `OUT/<name>_error_find.jsonl`, `OUT/<name>_error_fix.jsonl`,
`dataset_info.json`, `stats.json` (train/records.py).

`--with-right` also writes `OUT/<name>_right_error_find.jsonl`: one error_find record per image that was read
right, whose answer is the reading with nothing marked. The paper's corpus holds wrong readings only, so
error_find never sees a reading to leave alone; mix these records in, weighted as you like, to show it some
(docs/training.md says what they did for the bundled model).

`--with-follow` also writes `OUT/<name>_follow_tree.jsonl` and `OUT/<name>_follow_count.jsonl`: per wrong
reading, a Tree-CoT and a counting record whose answer is that reading. The tree (or the counts) is `given`
(train/records.py): the model is shown it at the start of its answer and learns only the final LaTeX. As the
chain and the image disagree there, only following the chain gets the LaTeX right: the records are meant to
teach a model to write the LaTeX its own tree and counts describe (not in the paper; docs/training.md says
what they did for the bundled model).

Cross-fold loop: the vanilla records of DIR are split into K folds by a seeded hash of their image path (the
same split on every run). For fold k, `python -m train.finetune` fine-tunes on the records (all tasks) of the
other folds, written to `OUT/fold_k/data`; every unrecognised option of this command (e.g. `--max_steps 20`,
`--model BASE`) is passed on to it. Then each held-out image is decoded N times with sampling, and its
distinct wrong predictions become records. Resumable fold by fold: `OUT/fold_k/done.json` marks a finished
fold (skipped on re-run); `OUT/fold_k/trained` a finished fine-tune; an unfinished one is restarted with
`--resume` when it left a checkpoint. `OUT/split.json` pins the data folder, K and the fold seed: resuming
with another split is refused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from train.records import (
    follow_record, parse_record, read_jsonl, register, sharegpt_record, write_atomic, write_json, write_jsonl,
)
from unimumer.tasks import CorrectionError, MalformedLatexError, apply_corrections
from unimumer.tasks.edl import TAGS as EDL_TAGS

EDL_TASKS = ("error_find", "error_fix")
RIGHT = "right_error_find"  # entry suffix of the --with-right records
FOLLOW = {"follow_tree": "tree", "follow_count": "count"}  # entry suffix -> task of the --with-follow records


def error_pair(image: str, candidate: str, truth: str) -> tuple[dict, dict]:
    """The error_find and error_fix records of one wrong candidate.

    Raises MalformedLatexError (e.g. a candidate holding a reserved tag) or CorrectionError when the
    fix record would not round-trip.
    """
    find = sharegpt_record("error_find", image, truth, candidate=candidate)
    fix = sharegpt_record("error_fix", image, truth, candidate=candidate)
    marked = find["messages"][1]["value"]
    operations, _, last = fix["messages"][1]["value"].rpartition("\n")
    if apply_corrections(marked, operations) != last:
        raise CorrectionError("The correction log does not turn the marked formula into the truth.")
    return find, fix


def _tokens(text) -> list[str]:
    return str(text or "").split()


def _pairs_for(image: str, truth: str, candidates, stats: Counter) -> list[tuple[dict, dict]]:
    """Records for the distinct wrong candidates of one image; counts what happened in `stats`."""
    pairs, seen = [], set()
    for candidate in candidates:
        tokens = tuple(_tokens(candidate))
        if list(tokens) == _tokens(truth):
            stats["correct"] += 1
        elif tokens in seen:
            stats["repeated_wrong"] += 1
        else:
            seen.add(tokens)
            try:
                pairs.append(error_pair(image, " ".join(tokens), " ".join(_tokens(truth))))
                stats["wrong"] += 1
            except (MalformedLatexError, CorrectionError):
                stats["skipped_unmarkable"] += 1
    return pairs


def _right_records(image: str, truth: str, candidates, stats: Counter) -> list[dict]:
    """The error_find record "nothing to mark" of an image, when one of its candidates is right."""
    if not any(_tokens(candidate) == _tokens(truth) for candidate in candidates):
        return []
    reading = " ".join(_tokens(truth))
    try:
        return [sharegpt_record("error_find", image, reading, candidate=reading)]
    except MalformedLatexError:
        stats["skipped_unmarkable"] += 1
        return []


def _follow_records(image: str, truth: str, candidates, stats: Counter) -> dict[str, list[dict]]:
    """The --with-follow records of an image: its distinct wrong candidates, per follow entry."""
    records: dict[str, list[dict]] = {entry: [] for entry in FOLLOW}
    for tokens in dict.fromkeys(tuple(_tokens(c)) for c in candidates):
        if not tokens or list(tokens) == _tokens(truth):
            continue
        try:
            if set(tokens) & set(EDL_TAGS):  # an answer the model must never write
                raise MalformedLatexError("reserved tag")
            built = {entry: follow_record(task, image, " ".join(tokens)) for entry, task in FOLLOW.items()}
        except MalformedLatexError:  # or e.g. unbalanced braces: no tree to give
            stats["skipped_unfollowable"] += 1
            continue
        for entry, record in built.items():
            records[entry].append(record)
    return records


def _write(out: Path, name: str, pairs: list[tuple[dict, dict]], stats: dict, optional: dict[str, list | None]) -> dict:
    """Write the EDL columns and the optional ones (entry suffix -> records, or None: not built, so an earlier
    build's entry is dropped from the registry)."""
    columns = dict(zip(EDL_TASKS, zip(*pairs) if pairs else ((), ())))
    columns.update({suffix: records for suffix, records in optional.items() if records is not None})
    files = {}
    for task, column in columns.items():
        files[f"{name}_{task}"] = f"{name}_{task}.jsonl"
        stats.setdefault("records", {})[task] = write_jsonl(out / f"{name}_{task}.jsonl", column)
    register(out, name, files, stats, stale=tuple(f"{name}_{s}" for s, records in optional.items() if records is None))
    return stats


def _optional(with_right: bool, right: list[dict], with_follow: bool, follow: dict[str, list[dict]]) -> dict:
    return {RIGHT: right if with_right else None, **{e: follow[e] if with_follow else None for e in FOLLOW}}


def from_predictions(predictions, out_dir, name: str | None = None, images_root=None, with_right: bool = False,
                     with_follow: bool = False) -> dict:
    """EDL records from a predictions file; image paths come from each row's `image_path`.

    With `images_root` the image is `images_root/image_path`, written relative to `out_dir`; without
    it the path is kept as written. Either way images that do not exist here are counted, not dropped.
    """
    from unimumer.metrics import load_predictions

    predictions, out = Path(predictions), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or predictions.stem.removesuffix("_pred")
    rows = load_predictions(predictions)
    counts: Counter = Counter()
    pairs, right, follow = [], [], {entry: [] for entry in FOLLOW}
    for row in rows:
        image = str(row.get("image_path") or row.get("image") or row.get("img_id") or "")
        if images_root is not None:
            image = os.path.relpath(Path(images_root, image), out)
        if not _tokens(row.get("gt")):
            counts["skipped_missing_truth"] += 1
            continue
        if not (out / image).is_file():
            counts["image_not_found"] += 1
        pairs += _pairs_for(image, row["gt"], [row.get("pred")], counts)
        if with_right:
            right += _right_records(image, row["gt"], [row.get("pred")], counts)
        if with_follow:
            for entry, records in _follow_records(image, row["gt"], [row.get("pred")], counts).items():
                follow[entry] += records
    stats = {"source": str(predictions.resolve()), "predictions": len(rows), **dict(counts)}
    return _write(out, name, pairs, stats, _optional(with_right, right, with_follow, follow))


# ---------------------------------------------------------------- cross-fold loop


def vanilla_items(data_dir) -> list[tuple[str, str]]:
    """(image path relative to DIR, LaTeX) of every vanilla record in DIR, first occurrence of an image."""
    items: dict[str, str] = {}
    for file in sorted(Path(data_dir).glob("*_vanilla.jsonl")):
        for record in read_jsonl(file):
            images, _, latex = parse_record(record)
            if images:
                items.setdefault(str(images[0]), latex)
    return list(items.items())


def split_folds(items: list[tuple[str, str]], folds: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Deal the items into `folds` folds of equal size, in the order of a seeded hash of the image path:
    the same split on every run, whatever the order of the records."""
    def key(item: tuple[str, str]) -> str:
        return hashlib.sha1(f"{seed}:{item[0]}".encode()).hexdigest()

    ordered = sorted(items, key=key)
    return [ordered[k::folds] for k in range(folds)]


def _write_train_data(data: Path, held_out: set[str], target: Path) -> dict:
    """Copy DIR's records whose image is not held out into `target` (images re-pointed into DIR)."""
    target.mkdir(parents=True, exist_ok=True)
    files, counts = {}, {}
    for file in sorted(data.glob("*.jsonl")):
        kept = []
        for record in read_jsonl(file):
            images = record.get("images") or []
            if images and images[0] not in held_out:
                kept.append({**record, "images": [os.path.relpath(data / p, target) for p in images]})
        if kept:
            files[file.stem] = file.name
            counts[file.stem] = write_jsonl(target / file.name, kept)
    register(target, "train", files, {"records": counts})
    return counts


def _finetune(fold_dir: Path, config: str, overrides: list[str]) -> Path:
    """Fine-tune this fold's model (resuming an interrupted run); returns the model folder."""
    model = fold_dir / "model"
    if (fold_dir / "trained").exists():
        return model
    command = [sys.executable, "-m", "train.finetune", "--config", str(config), "--data", str(fold_dir / "data"),
               "--output_dir", str(model), *overrides]
    if any(model.glob("checkpoint-*")):
        command.append("--resume")
    print(f"{fold_dir.name}: {' '.join(command)}", file=sys.stderr)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise RuntimeError(f"Fine-tuning {fold_dir.name} failed (exit code {result.returncode}); "
                           "run the same command again to resume it.")
    write_atomic(fold_dir / "trained", "ok\n")
    return model


def _sample(model: Path, data: Path, items, samples: int, temperature: float, max_new_tokens, batch_size: int,
            label: str) -> list[dict]:
    """N sampled predictions for every held-out image."""
    from unimumer import Recognizer

    recognizer = Recognizer.from_pretrained(str(model))
    rows = []
    for start in tqdm(range(0, len(items), batch_size), desc=f"{label} sampling", file=sys.stderr, unit=" batches"):
        batch = items[start:start + batch_size]
        images = [str(data / image) for image, _ in batch for _ in range(samples)]
        results = recognizer.recognize_batch(images, mode="vanilla", batch_size=len(images), raise_errors=False,
                                             do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens)
        for i, (image, latex) in enumerate(batch):
            mine = results[i * samples:(i + 1) * samples]
            row = {"image": image, "gt": latex, "preds": [r.latex for r in mine if not r.error]}
            if any(r.error for r in mine):
                row["error"] = next(r.error for r in mine if r.error)  # an unusable image: no predictions
            rows.append(row)
    return rows


def cross_fold(data_dir, out_dir, config, *, folds: int = 3, samples: int = 4, temperature: float = 1.0,
               overrides: list[str] = (), name: str = "edl", seed: int = 0, max_new_tokens: int | None = None,
               batch_size: int = 8, with_right: bool = False, with_follow: bool = False) -> dict:
    """The paper's K-fold EDL loop (module docstring); returns the stats written to OUT/stats.json."""
    data, out = Path(data_dir).resolve(), Path(out_dir).resolve()
    items = vanilla_items(data)
    if len(items) < folds or folds < 2:
        raise ValueError(f"{data} has {len(items)} vanilla records; {folds} folds need at least 2 folds and "
                         "one image per fold.")
    split = {"data": str(data), "folds": folds, "fold_seed": seed}
    try:
        earlier = json.loads((out / "split.json").read_text())
    except FileNotFoundError:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "split.json", split)
        earlier = split
    if earlier != split:
        raise ValueError(f"{out} holds folds of another split ({earlier}); use another --out.")
    for k, held_out in enumerate(split_folds(items, folds, seed)):
        fold_dir = out / f"fold_{k}"
        if (fold_dir / "done.json").exists():
            print(f"fold_{k}: done", file=sys.stderr)
            continue
        _write_train_data(data, {image for image, _ in held_out}, fold_dir / "data")
        model = _finetune(fold_dir, config, list(overrides))
        rows = _sample(model, data, held_out, samples, temperature, max_new_tokens, batch_size, f"fold_{k}")
        write_json(fold_dir / "predictions.json", rows)
        counts: Counter = Counter()
        pairs = []
        for row in rows:
            counts["unusable_image"] += "error" in row
            pairs += _pairs_for(os.path.relpath(data / row["image"], out), row["gt"], row["preds"], counts)
        for task, column in zip(EDL_TASKS, zip(*pairs) if pairs else ((), ())):
            write_jsonl(fold_dir / f"{task}.jsonl", column)
        write_json(fold_dir / "done.json", {"held_out": len(held_out), **dict(counts)})  # counts, summed below

    pairs_by_task = {task: [] for task in EDL_TASKS}
    totals: Counter = Counter()
    right, follow = [], {entry: [] for entry in FOLLOW}
    for k in range(folds):
        fold_dir = out / f"fold_{k}"
        totals.update(json.loads((fold_dir / "done.json").read_text()))
        for task in EDL_TASKS:
            pairs_by_task[task] += read_jsonl(fold_dir / f"{task}.jsonl")
        # the optional records come from the fold's saved samples, so folds finished without the option serve too
        for row in json.loads((fold_dir / "predictions.json").read_text()) if with_right or with_follow else ():
            image = os.path.relpath(data / row["image"], out)
            if with_right:
                right += _right_records(image, row["gt"], row["preds"], totals)
            if with_follow:
                for entry, records in _follow_records(image, row["gt"], row["preds"], totals).items():
                    follow[entry] += records
    stats = {"source": str(data), "folds": folds, "samples": samples, "temperature": temperature, **dict(totals)}
    optional = _optional(with_right, right, with_follow, follow)
    return _write(out, name, list(zip(*pairs_by_task.values())), stats, optional)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.error_corpus",
        allow_abbrev=False,  # unknown options go to train.finetune: never guess a prefix
        description="Build error-driven-learning records (error_find, error_fix) from a model's mistakes: "
        "from a predictions file, or with the paper's K-fold fine-tune-and-sample loop. Options not listed "
        "here are passed to `python -m train.finetune` (e.g. --max_steps 20, --model BASE).",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-predictions", metavar="PRED", help="predictions JSON/JSONL: [{gt, pred, image_path}]")
    mode.add_argument("--data", metavar="DIR", help="built data folder whose vanilla records are split into folds")
    parser.add_argument("--out", required=True, help="output data folder")
    parser.add_argument("--name", help="dataset name (default: the predictions file stem, or 'edl')")
    parser.add_argument("--images-root", help="folder the predictions' image_path values are relative to")
    parser.add_argument("--folds", type=int, default=3, help="K of the cross-fold loop (default 3)")
    parser.add_argument("--samples", type=int, default=4, help="sampled predictions per held-out image (default 4)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--config", help="train.finetune YAML config (required with --data)")
    parser.add_argument("--fold-seed", type=int, default=0, help="seed of the fold split (default 0)")
    parser.add_argument("--max-new-tokens", type=int, help="cap on generated tokens per sample")
    parser.add_argument("--batch-size", type=int, default=8, help="held-out images per generation batch")
    parser.add_argument("--with-right", action="store_true",
                        help="also write <name>_right_error_find.jsonl: images read right, with nothing marked "
                        "(shows error_find readings to leave alone; not in the paper's recipe)")
    parser.add_argument("--with-follow", action="store_true",
                        help="also write <name>_follow_tree.jsonl and <name>_follow_count.jsonl: each wrong reading's "
                        "tree or counts given, the reading itself the answer (meant to teach the final LaTeX to "
                        "follow the model's own chain; not in the paper's recipe)")
    args, overrides = parser.parse_known_args(argv)
    try:
        if args.from_predictions:
            if overrides:
                parser.error(f"unrecognized arguments: {' '.join(overrides)}")
            stats = from_predictions(args.from_predictions, args.out, args.name, args.images_root, args.with_right,
                                     args.with_follow)
        else:
            if not args.config:
                parser.error("--data needs --config (a train.finetune YAML)")
            stats = cross_fold(args.data, args.out, args.config, folds=args.folds, samples=args.samples,
                               temperature=args.temperature, overrides=overrides, name=args.name or "edl",
                               seed=args.fold_seed, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                               with_right=args.with_right, with_follow=args.with_follow)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = ", ".join(f"{k} {v}" for k, v in stats.get("records", {}).items())
    missing = stats.get("image_not_found")
    note = f"; {missing} image paths do not exist under {args.out} (kept as written)" if missing else ""
    print(f"{stats.get('wrong', 0)} wrong predictions -> records: {records or 'none'}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
