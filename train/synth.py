"""Synthetic handwritten math: CROHME-like expressions drawn as handwriting-like ink, built like real data.

    python -m train.synth --n 20000 --out data/synth --seed 0 --workers 2
    python -m train.synth --examples examples/        # the app's example images

Labels come from `train.synth_grammar` (the CROHME symbol, structure and length distribution, canonical
tokens, distinct within a run as far as the grammar allows); inks from `train.synth_ink` (font-glyph
skeletons, math layout, per-writer style and jitter). The inks go through `train.build_data.build`,
so the output folder has the same layout, renderer and resumability as a CROHME build:
`DIR/<name>_<task>.jsonl`, `DIR/images/<name>/`, `DIR/dataset_info.json`, `DIR/stats.json`.

Deterministic: the same --seed gives the same labels and inks whatever --workers is.
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path
from typing import Iterator

from train.build_data import BUILD_TASKS, DEFAULT_TASKS, build_with_pool, default_workers
from train.readers import Sample
from train.synth_grammar import sample_latex
from train.synth_ink import available_fonts, latex_to_ink, warm_glyphs
from unimumer.ink import render_ink

RETRIES = 10  # draws per label before a repeat is accepted (short labels run out: there are ~100 one-token ones)
CHUNK = 32  # samples per task sent to a generating process
WARM_FROM = 1000  # runs at least this big trace every glyph up front (~2 s)
# The app's gallery: (file stem, label, writer seed). Seeds were picked for a legible, varied hand.
EXAMPLES = (
    ("quadratic", r"x = \frac { - b \pm \sqrt { b ^ { 2 } - 4 a c } } { 2 a }", 7),
    ("pythagoras", r"a ^ { 2 } + b ^ { 2 } = c ^ { 2 }", 2),
    ("sum", r"\sum \limits _ { i = 1 } ^ { n } i = \frac { n ( n + 1 ) } { 2 }", 1),
    ("integral", r"\int \limits _ { 0 } ^ { 1 } x ^ { 2 } d x = \frac { 1 } { 3 }", 6),
    ("limit", r"\lim \limits _ { x \rightarrow 0 } \frac { \sin x } { x } = 1", 2),
    ("trig", r"\sin ^ { 2 } \theta + \cos ^ { 2 } \theta = 1", 2),
    ("root", r"\sqrt { x ^ { 2 } + y ^ { 2 } } \leq | x | + | y |", 2),
    ("log", r"\log _ { 2 } ( 8 ) = 3", 1),
    ("polynomial", r"( x + 1 ) ^ { 2 } = x ^ { 2 } + 2 x + 1", 2),
    ("series", r"e ^ { x } = 1 + x + \frac { x ^ { 2 } } { 2 } + \ldots", 2),
)


def synth_labels(n: int, seed: int = 0, max_len: int = 60) -> Iterator[str]:
    """n CROHME-like labels; a label already drawn is redrawn (up to RETRIES times) to keep them distinct."""
    rng = random.Random(f"labels:{seed}")
    seen: set[str] = set()
    for _ in range(n):
        for _ in range(RETRIES):
            latex = sample_latex(rng, max_len=max_len)
            if latex not in seen:
                break
        seen.add(latex)
        yield latex


def synth_ink(latex: str, seed: int, index: int):
    """The ink of sample `index`: its own writer and jitter, fixed by (seed, index)."""
    return latex_to_ink(latex, random.Random(f"ink:{seed}:{index}"))


def _make(job: tuple[str, int, list[tuple[int, str]]]) -> list[Sample]:
    name, seed, items = job
    return [Sample(id=f"{name}_{i:07d}", latex=latex, ink=synth_ink(latex, seed, i)) for i, latex in items]


def synth_samples(n: int, seed: int = 0, name: str = "synth", max_len: int = 60, pool=None) -> Iterator[Sample]:
    """`train.readers.Sample`s with in-memory inks, in a fixed order; a `multiprocessing.Pool` (made in the
    main thread) draws the inks in parallel."""
    labels = enumerate(synth_labels(n, seed, max_len))
    jobs = ((name, seed, chunk) for chunk in iter(lambda: list(itertools.islice(labels, CHUNK)), []))
    for samples in pool.imap(_make, jobs) if pool is not None else map(_make, jobs):
        yield from samples


EXAMPLES_README = """# Example images

Handwriting-like images made by this project's synthetic-data generator (`train/synth.py`): each
expression below is drawn as ink by `train.synth_ink` (skeletons of handwriting fonts, a math layout,
per-writer jitter) with the writer seed shown, and rendered by `unimumer.ink.render_ink` at {height} px.
No dataset image is copied or re-rendered here. Regenerate them all (and this file) with

    python -m train.synth --examples examples

"""


def write_examples(out_dir, height: int = 160) -> list[Path]:
    """Render EXAMPLES to out_dir/<stem>.png (the app's gallery) and list them in out_dir/README.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    rows = []
    for stem, latex, seed in EXAMPLES:
        path = out / f"{stem}.png"
        render_ink(synth_ink(latex, seed, 0), height=height).save(path, optimize=True)
        paths.append(path)
        rows.append(f"- `{stem}.png` (writer seed {seed}): `{latex}`\n")
    (out / "README.md").write_text(EXAMPLES_README.format(height=height) + "".join(rows), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.synth",
        description="Generate synthetic handwritten-math training data: CROHME-like LaTeX expressions drawn as "
        "handwriting-like ink, rendered and written like `train.build_data` (ShareGPT JSONL per task + images). "
        "Resumable: run the same command again to continue.",
    )
    parser.add_argument("--n", type=int, help="number of expressions")
    parser.add_argument("--out", help="output data folder DIR")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data (default 0)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated among {','.join(BUILD_TASKS)}")
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (default: CPU count)")
    parser.add_argument("--name", default="synth", help="dataset name, the file prefix (default: synth)")
    parser.add_argument("--max-len", type=int, default=60, help="longest label in tokens (default 60)")
    parser.add_argument("--height", type=int, help="rendered ink height in pixels (default: render_ink's, 128)")
    parser.add_argument("--ink", action="store_true",
                        help="keep inks as InkML: training draws each one afresh like the app's sketchpad, varied")
    parser.add_argument("--examples", metavar="DIR", help="instead: write the app's example images to DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.examples:
        for path in write_examples(args.examples):
            print(path)
        return 0
    if args.n is None or args.out is None:
        parser.error("--n and --out are required (or use --examples DIR)")
    if args.n < 1 or args.max_len < 1:
        parser.error("--n and --max-len must be positive")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    available_fonts()  # warn about missing fonts once, up front
    source = {"synth": args.seed, "n": args.n, "max_len": args.max_len}
    start = time.perf_counter()
    # Inks are drawn by one pool, then rendered and written by build's own pool of the same size.
    # Glyphs are traced lazily per process; a big run traces them all first so forked workers share them.
    if args.workers > 1 and args.n >= WARM_FROM:
        warm_glyphs()
    try:
        stats = build_with_pool(lambda pool: synth_samples(args.n, args.seed, args.name, args.max_len, pool),
                                args.out, args.name, tasks, args.workers, source=source,
                                progress=not args.no_progress, keep_ink=args.ink, height=args.height)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"{args.name}: {stats['kept']} of {stats['inputs']} expressions; records: "
          f"{', '.join(f'{k} {v}' for k, v in stats['records'].items())}; {args.out} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
