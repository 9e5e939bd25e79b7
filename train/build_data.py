"""Build multi-task training data: samples -> images + ShareGPT JSONL per task, resumably.

    python -m train.build_data crohme ../shared/data/crohme/inkml/train --out data/crohme
    python -m train.build_data hme100k HME100K/train --out data/hme --tasks vanilla,tree,count --workers 8

Writes into DIR (layout in train/records.py): `<name>_<task>.jsonl`, `images/<name>/<id>.png` (inks are
rendered; image files are checked and copied), `dataset_info.json`, `stats.json`.

Work is done in chunks of CHUNK input samples by a process pool (parse, normalise, render, targets), and the
main process appends each finished chunk's records, in input order, to the task files. Resume design:
after every chunk the task files are flushed and fsync'ed, then `DIR/.build/<name>.json` is replaced
atomically with the number of inputs done and the byte length of every task file. A run that is killed
leaves at most a tail past those lengths; the next run truncates it away and continues with the next
input, so records are never duplicated or torn. The stream order is deterministic (readers sort), so
"inputs done" identifies the work. Images are written to a temporary name and renamed, so an image file
is whole or absent. A re-run with other tasks, render options or input starts over; a larger --limit
continues. `dataset_info.json` gets the dataset only when the build is complete.

A sample whose LaTeX the tree or count target cannot handle (unimumer.tasks.MalformedLatexError) keeps
its other records; the missing ones are counted under `records_skipped` in stats.json.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import os
import re
import shutil
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from train.readers import SOURCES, Sample, Skip, read_source, resolve
from train.records import register, sharegpt_record, write_json
from unimumer.images import ImageError, load_image
from unimumer.ink import InkError, render_ink, write_inkml
from unimumer.tasks import MalformedLatexError

DEFAULT_TASKS = ("vanilla", "tree", "count")
BUILD_TASKS = ("vanilla", "tree", "count")  # error_find / error_fix come from train.error_corpus
CHUNK = 64  # inputs per unit of work: the granularity of resuming and of the progress bar
COPY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
EXAMPLES = 3  # ids kept per skip reason in stats.json, to find the bad files
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def file_id(sample_id: str) -> str:
    """A sample id made safe as a file name (also the key for duplicate detection)."""
    return _UNSAFE.sub("_", sample_id).lstrip(".") or "_"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Job:
    """What every worker needs to turn samples into files and records."""

    out_dir: str
    name: str
    tasks: tuple[str, ...]
    render: tuple[tuple[str, object], ...]  # render_ink keyword arguments
    keep_ink: bool = False  # write inks as InkML (drawn afresh at training time) instead of rendering them


def _png_gray(image) -> bytes:
    """A grayscale PNG without row filters, deflated with run-length matching.

    For rendered line art this is 3x faster than PIL's PNG encoder (adaptive filtering) and smaller.
    """
    width, height = image.size
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # column 0: filter type 0 (none) of each row
    rows[:, 1:] = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(height, width)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    idat = deflate.compress(rows.tobytes()) + deflate.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _write_image(job: Job, sample: Sample) -> str:
    """Write the sample's image under DIR/images/<name>/ and return its path relative to DIR.

    Inks are rendered to grayscale PNG (or written as InkML with `job.keep_ink`); image files are decoded
    once (a file that would crash training is refused here) and copied byte for byte when their format is a common one, else re-encoded as PNG.
    """
    path = sample.image_path
    suffix = os.path.splitext(path)[1].lower() if path is not None else ""
    copy = sample.ink is None and path is not None and suffix in COPY_SUFFIXES
    ink = sample.ink is not None and job.keep_ink
    rel = f"images/{job.name}/{file_id(sample.id)}{suffix if copy else '.inkml' if ink else '.png'}"
    target = os.path.join(job.out_dir, rel)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp{os.getpid()}")
    if ink:
        data = write_inkml(sample.ink)
    elif sample.ink is not None:
        data = _png_gray(render_ink(sample.ink, mode="L", **dict(job.render)))
    else:
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(path)
        image = load_image(sample.image_bytes if sample.image_bytes is not None else path)
        if copy:
            shutil.copyfile(path, tmp)
        else:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
    if not copy:
        with open(tmp, "wb") as f:
            f.write(data)
    os.replace(tmp, target)
    return rel


def _process(job: Job, item: Sample | Skip, stats: dict) -> dict[str, str]:
    """One input -> its JSONL lines per task ({} when skipped); counts go into `stats`."""
    if isinstance(item, Sample):
        item = resolve(item)
    if isinstance(item, Skip):
        _skip(stats, item)
        return {}
    records: dict[str, dict] = {}
    for task in job.tasks:
        try:
            records[task] = sharegpt_record(task, "", item.latex)
        except MalformedLatexError as e:
            stats["records_skipped"].setdefault(task, Counter())["malformed_latex"] += 1
            _example(stats, f"{task}:malformed_latex", item.id, str(e))
    if not records:
        _skip(stats, Skip(item.id, "malformed_latex", "no task target could be built"))
        return {}
    try:
        image = _write_image(job, item)
    except FileNotFoundError:
        _skip(stats, Skip(item.id, "missing_image", f"{item.image_path} does not exist"))
        return {}
    except ImageError as e:
        _skip(stats, Skip(item.id, "bad_image", str(e)))
        return {}
    except InkError as e:
        _skip(stats, Skip(item.id, "bad_ink", str(e)))
        return {}
    stats["kept"] += 1
    lines = {}
    for task, record in records.items():
        record["images"] = [image]
        lines[task] = json.dumps(record, ensure_ascii=False) + "\n"
    return lines


def _skip(stats: dict, skip: Skip) -> None:
    stats["skipped"][skip.reason] += 1
    _example(stats, skip.reason, skip.id, skip.detail)


def _example(stats: dict, reason: str, sample_id: str, detail: str) -> None:
    examples = stats["examples"].setdefault(reason, [])
    if len(examples) < EXAMPLES:
        examples.append(f"{sample_id}: {detail}" if detail else sample_id)


def _new_stats() -> dict:
    return {"inputs": 0, "kept": 0, "skipped": Counter(), "records": Counter(), "records_skipped": {},
            "examples": {}}


def process_chunk(job: Job, items: list) -> tuple[dict[str, list[str]], dict]:
    """Worker entry: a chunk of inputs -> (JSONL lines per task, in input order; chunk stats).

    Malformed input never escapes as an exception: anything unexpected is a counted skip.
    """
    stats = _new_stats()
    lines: dict[str, list[str]] = {task: [] for task in job.tasks}
    for item in items:
        stats["inputs"] += 1
        try:
            produced = _process(job, item, stats)
        except Exception as e:  # a reader/renderer bug must not kill a 230K-sample build
            _skip(stats, Skip(getattr(item, "id", "?"), f"error_{type(e).__name__}", str(e)))
            continue
        for task, line in produced.items():
            lines[task].append(line)
            stats["records"][task] += 1
    return lines, stats


def _merge_stats(total: dict, part: dict) -> None:
    total["inputs"] += part["inputs"]
    total["kept"] += part["kept"]
    for key in ("skipped", "records"):
        total[key] = Counter(total[key]) + Counter(part[key])
    for task, counts in part["records_skipped"].items():
        total["records_skipped"][task] = Counter(total["records_skipped"].get(task, {})) + counts
    for reason, examples in part["examples"].items():
        kept = total["examples"].setdefault(reason, [])
        kept += examples[: EXAMPLES - len(kept)]


def _dedup(items: Iterable[Sample | Skip]) -> Iterator[Sample | Skip]:
    """Turn a repeated id (same image file name) into a Skip."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Sample):
            key = file_id(item.id)
            if key in seen:
                item = Skip(item.id, "duplicate_id", "an earlier sample has the same id")
            seen.add(key)
        yield item


def _chunks(items: Iterator, size: int, slots: threading.Semaphore, stop: threading.Event) -> Iterator[list]:
    """Lists of `size` items; each waits for a free slot first, so the pool never reads far ahead."""
    while True:
        slots.acquire()
        chunk = [] if stop.is_set() else list(itertools.islice(items, size))
        if not chunk:
            return
        yield chunk


class _State:
    """DIR/.build/<name>.json: options, inputs done, valid byte length of each task file, stats."""

    def __init__(self, out_dir: Path, name: str, options: dict, tasks: tuple[str, ...], limit: int | None):
        self.path = out_dir / ".build" / f"{name}.json"
        self.files = {task: out_dir / f"{name}_{task}.jsonl" for task in tasks}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            saved = None
        self.note = ""
        if saved is not None and saved.get("options") != options:
            self.note, saved = "the options or the input changed since the last run: starting over", None
        elif saved is not None and limit is not None and limit < saved["inputs"]:
            self.note, saved = f"--limit {limit} is below the {saved['inputs']} inputs built: starting over", None
        elif saved is not None and any(
            not f.exists() or f.stat().st_size < saved["offsets"].get(t, 0) for t, f in self.files.items()
        ):
            self.note, saved = "a task file is shorter than recorded: starting over", None
        self.fresh = saved is None
        self.data = saved or {"options": options, "inputs": 0, "exhausted": False,
                              "offsets": {t: 0 for t in tasks}, "stats": _new_stats()}
        for key in ("skipped", "records"):
            self.data["stats"][key] = Counter(self.data["stats"][key])

    def save(self) -> None:
        write_json(self.path, self.data)


def build(
    samples: Iterable[Sample | Skip],
    out_dir,
    name: str,
    tasks: Iterable[str] = DEFAULT_TASKS,
    workers: int | None = None,
    limit: int | None = None,
    *,
    source=None,
    progress: bool = True,
    keep_ink: bool = False,
    **render,
) -> dict:
    """Render/copy images and write `<name>_<task>.jsonl` records into `out_dir`; returns the stats.

    `samples`: Sample / Skip items in a stable order (Samples may carry an in-memory Ink). `limit`: how many
    inputs to take. `workers`: processes (default: every CPU; 0 or 1 works in this process). `source`: any
    JSON-able description of the input — a re-run with another one starts over instead of resuming.
    `render`: keyword arguments of unimumer.ink.render_ink (height, stroke_width, margin). `keep_ink`: write
    inks as InkML instead (train.dataset draws them like the app's sketchpad, varied at every use).
    """
    tasks = tuple(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in BUILD_TASKS]
    if unknown or not tasks:
        raise ValueError(f"Tasks must be among {', '.join(BUILD_TASKS)}; got {', '.join(unknown) or 'none'}.")
    if file_id(name) != name:
        raise ValueError(f"Dataset name {name!r} must be a plain file name (letters, digits, . _ + -).")
    workers = default_workers() if workers is None else workers
    out = Path(out_dir)
    (out / "images" / name).mkdir(parents=True, exist_ok=True)
    (out / ".build").mkdir(exist_ok=True)
    render = {k: v for k, v in render.items() if v is not None}
    options = {"tasks": list(tasks), "render": render, "chunk": CHUNK, "source": source}
    if keep_ink:
        options["keep_ink"] = True
    state = _State(out, name, options, tasks, limit)
    if state.note:
        print(f"{name}: {state.note}.", file=sys.stderr)
    if state.fresh:  # files of a different earlier build of this name
        for leftover in (out / "images" / name).glob(".*.tmp*"):
            leftover.unlink()
        for task in set(BUILD_TASKS) - set(tasks):
            (out / f"{name}_{task}.jsonl").unlink(missing_ok=True)

    done = state.data["inputs"]
    handles = {}
    try:
        for task, path in state.files.items():
            handles[task] = open(path, "w+b" if state.fresh or not path.exists() else "r+b")
            handles[task].truncate(state.data["offsets"][task])  # drop the torn tail of a killed run
            handles[task].seek(0, os.SEEK_END)
        if not (state.data["exhausted"] or (limit is not None and done >= limit)):
            stream = itertools.islice(_dedup(itertools.islice(samples, limit)), done, None)
            job = Job(str(out), name, tasks, tuple(sorted(render.items())), keep_ink)
            _run(stream, state, handles, job, workers, progress, limit)
    finally:
        for handle in handles.values():
            handle.close()

    stats = state.data["stats"]
    summary = {"source": source, "tasks": list(tasks), "render": render, "complete": True,
               **{k: stats[k] for k in ("inputs", "kept", "skipped", "records", "records_skipped", "examples")}}
    entries = {f"{name}_{t}": p.name for t, p in state.files.items()}
    register(out, name, entries, summary, stale=tuple(f"{name}_{t}" for t in BUILD_TASKS if t not in tasks))
    return summary


def build_with_pool(make_samples, out_dir, name: str, tasks: Iterable[str], workers: int, **kwargs) -> dict:
    """`build` over the samples `make_samples(pool)` yields, where `pool` is a `multiprocessing.Pool` of
    `workers` processes (None for one) that generators such as train.synth draw inks with; always closed."""
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        return build(make_samples(pool), out_dir, name, tasks, workers=workers, **kwargs)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _run(stream: Iterator, state: _State, handles: dict, job: Job, workers: int, progress: bool,
         limit: int | None) -> None:
    """Process the remaining inputs, appending each chunk's records and recording progress."""
    data = state.data
    bar = tqdm(total=limit, initial=data["inputs"], unit=" inputs", desc=job.name, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    slots, stop = threading.Semaphore(max(workers, 1) * 4), threading.Event()
    chunks = _chunks(stream, CHUNK, slots, stop)
    pool = multiprocessing.Pool(workers) if workers > 1 else None
    try:
        work = partial(process_chunk, job)
        for lines, part in pool.imap(work, chunks) if pool else map(work, chunks):
            slots.release()
            for task, handle in handles.items():
                handle.write("".join(lines[task]).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
                data["offsets"][task] = handle.tell()
            data["inputs"] += part["inputs"]
            _merge_stats(data["stats"], part)
            state.save()  # only now is the chunk part of the build
            bar.update(part["inputs"])
            bar.set_postfix(kept=data["stats"]["kept"], refresh=False)
        data["exhausted"] = limit is None or data["inputs"] < limit
        state.save()
    finally:
        bar.close()
        stop.set()
        slots.release()  # unblock the pool's feeder thread so terminate() can join it
        if pool is not None:
            pool.terminate()
            pool.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.build_data",
        description="Build Uni-MuMER training data (ShareGPT JSONL per task + images) from a dataset. "
        "Resumable: run the same command again to continue an interrupted build.",
    )
    parser.add_argument("source", choices=SOURCES, help="dataset format")
    parser.add_argument("path", help="file or folder of the dataset (InkML folder, caption file, JSON, parquet)")
    parser.add_argument("--out", required=True, help="output data folder DIR")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated among vanilla,tree,count")
    parser.add_argument("--labels",
                        help="id<TAB>latex caption file or predictions JSON (img_id -> gt) replacing the LaTeX")
    parser.add_argument("--limit", type=int, help="take only the first N inputs")
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (default: CPU count)")
    parser.add_argument("--name", help="dataset name, the file prefix (default: the source)")
    parser.add_argument("--height", type=int, help="rendered ink height in pixels (default: render_ink's, 128)")
    parser.add_argument("--stroke-width", type=float,
                        help="ink stroke width in pixels (default: 2.5%% of the height)")
    parser.add_argument("--ink", action="store_true",
                        help="keep inks as InkML: training draws each one afresh like the app's sketchpad, varied")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    name = args.name or args.source
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    source = {"source": args.source, "path": str(Path(args.path).resolve()),
              "labels": str(Path(args.labels).resolve()) if args.labels else None}
    start = time.perf_counter()
    try:
        samples = read_source(args.source, args.path, labels=args.labels)
        stats = build(samples, args.out, name, tasks, workers=args.workers, limit=args.limit, source=source,
                      progress=not args.no_progress, keep_ink=args.ink, height=args.height,
                      stroke_width=args.stroke_width)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped"].items())) or "none"
    records = ", ".join(f"{k} {v}" for k, v in stats["records"].items())
    print(f"{name}: kept {stats['kept']} of {stats['inputs']} inputs (skipped: {skipped}); "
          f"records: {records}; {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
