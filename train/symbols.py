"""Symbol-level training data from CROHME's symbol segmentation: isolated symbols and symbol strings.

    python -m train.symbols ../shared/data/crohme/inkml/train --out data/symbols
    python -m train.symbols ../shared/data/crohme/inkml/train --out data/symbols --strings 5

Every `<traceGroup>` of a CROHME InkML is one symbol written by a real person, labelled (`x`, `\\alpha`,
`\\sin`, ...). Drawn alone, each becomes a vanilla record whose answer is that symbol. A small model
trained from scratch first learns to read the LaTeX *language* and ignores the picture (the answer's
prior is easy to lower); on a one-symbol answer there is no prior to lean on, so these records force
the vision tower to learn the glyphs. Mix them into the early training of a from-scratch model
(docs/training.md, the bundled model's stage 2).

Symbols that are not an expression on their own are left out: `\\sqrt` (its content is elsewhere) and
the ones whose shape only means something next to others (`.`, `,`, `\\prime`, `\\ldots`, `\\cdot`).
Output layout and resuming as `train.build_data` (dataset name `crohme_symbols`).

`--strings K` instead writes K *symbol strings* per ink (dataset `crohme_strings`): 2-6 of its symbols in
random order, set side by side on a common centre line with the writer's own spacing, answer = their
LaTeX left to right (`2 x \\alpha`). Real glyphs of one writer at their real relative sizes; they teach
reading order, the step between knowing symbols and reading whole expressions.
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from train.build_data import build_with_pool, default_workers
from train.readers import Sample, Skip, files_under
from unimumer.ink import Ink, InkError, parse_inkml
from unimumer.latex import LatexError, normalize

NAME = "crohme_symbols"
STRINGS_NAME = "crohme_strings"
STRING_LENGTHS = (2, 6)  # symbols per string, inclusive
HEIGHT = 64  # px: a symbol's size in a 512x128 expression after the model's 40,000-pixel area cap
STROKE = 2.5  # px: the expression rendering's stroke (3.2 px at 128) at that scale
CONTEXT_ONLY = {"\\sqrt", ".", ",", "\\prime", "\\ldots", "\\cdots", "\\cdot"}
FILES_PER_JOB = 16


def file_symbols(path: Path) -> list[Sample | Skip]:
    """The labelled symbols of one InkML file as Samples with their own ink (a Skip if unreadable)."""
    try:
        ink = parse_inkml(path)
    except InkError as e:
        return [Skip(path.stem, "bad_ink", str(e))]
    samples: list[Sample | Skip] = []
    for number, (label, traces) in enumerate(ink.groups):
        sample_id = f"{path.stem}_s{number}"
        if not label or label in CONTEXT_ONLY or not traces:
            continue
        try:
            latex = normalize(label)
        except LatexError as e:
            samples.append(Skip(sample_id, "bad_latex", str(e)))
            continue
        samples.append(Sample(id=sample_id, latex=latex, ink=Ink(traces=[ink.traces[i] for i in traces])))
    return samples


def symbol_string(symbols: list[Sample], rng: random.Random, sample_id: str) -> Sample:
    """Symbols of one ink side by side, left to right, vertically centred, gaps of 0.15-0.6 symbol sizes."""
    boxes = [np.concatenate(s.ink.traces) for s in symbols]
    size = float(np.median([max(np.ptp(b[:, 1]), np.ptp(b[:, 0]), 1e-6) for b in boxes]))
    traces, cursor = [], 0.0
    for symbol, points in zip(symbols, boxes):
        low, high = points.min(0), points.max(0)
        shift = np.array([cursor - low[0], -(low[1] + high[1]) / 2 + rng.uniform(-0.08, 0.08) * size])
        traces += [t + shift for t in symbol.ink.traces]
        cursor += high[0] - low[0] + rng.uniform(0.15, 0.6) * size
    return Sample(id=sample_id, latex=" ".join(s.latex for s in symbols), ink=Ink(traces=traces))


def file_strings(path: Path, count: int, seed: int = 0) -> list[Sample | Skip]:
    """`count` symbol strings from the symbols of one ink (none when it has fewer than two)."""
    found = file_symbols(path)
    symbols = [s for s in found if isinstance(s, Sample)]
    if len(symbols) < STRING_LENGTHS[0]:
        return [s for s in found if isinstance(s, Skip)]
    rng = random.Random(f"{seed}:{path.stem}")
    lengths = [rng.randint(STRING_LENGTHS[0], min(STRING_LENGTHS[1], len(symbols))) for _ in range(count)]
    return [symbol_string(rng.sample(symbols, k), rng, f"{path.stem}_t{n}") for n, k in enumerate(lengths)]


def _job(job: tuple[list[Path], int]) -> list[Sample | Skip]:
    paths, strings = job
    if strings:
        return [s for path in paths for s in file_strings(path, strings)]
    return [s for path in paths for s in file_symbols(path)]


def symbol_samples(folder, pool=None, strings: int = 0) -> Iterator[Sample | Skip]:
    """Every symbol (or `strings` symbol strings per ink) of every InkML under `folder`, in file order; a
    `multiprocessing.Pool` parses in parallel."""
    files = iter(files_under(Path(folder), (".inkml",)))
    jobs = iter(lambda: (list(itertools.islice(files, FILES_PER_JOB)), strings), ([], strings))
    for samples in pool.imap(_job, jobs) if pool is not None else map(_job, jobs):
        yield from samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.symbols",
        description="Symbol-level vanilla records from the symbol segmentation of CROHME InkML: one image per "
        "handwritten symbol (answer = the symbol), or with --strings K, K strings of 2-6 of each ink's symbols "
        "set side by side (answer = their LaTeX left to right). Same layout as train.build_data; resumable.",
    )
    parser.add_argument("path", help="folder of CROHME InkML (searched recursively) or one file")
    parser.add_argument("--out", required=True, help="output data folder DIR")
    parser.add_argument("--strings", type=int, default=0, metavar="K",
                        help="instead of isolated symbols: K symbol strings per ink")
    parser.add_argument("--name", help=f"dataset name, the file prefix (default: {NAME}, or {STRINGS_NAME})")
    parser.add_argument("--height", type=int, default=HEIGHT, help=f"symbol height in pixels (default {HEIGHT})")
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not Path(args.path).exists():
        parser.error(f"{args.path} does not exist")
    if args.strings < 0:
        parser.error("--strings must be >= 0")
    name = args.name or (STRINGS_NAME if args.strings else NAME)
    start = time.perf_counter()
    source = {"symbols": str(Path(args.path).resolve()), **({"strings": args.strings} if args.strings else {})}
    try:
        stats = build_with_pool(lambda pool: symbol_samples(args.path, pool, args.strings), args.out, name,
                                ["vanilla"], args.workers, source=source, progress=not args.no_progress,
                                height=args.height, stroke_width=STROKE * args.height / HEIGHT)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = "symbol strings" if args.strings else "symbols"
    print(f"{name}: {stats['kept']} {what}; {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
