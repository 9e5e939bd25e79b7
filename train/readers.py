"""Dataset readers: every source becomes a stream of `Sample` (id, ink or image, LaTeX) or `Skip`.

Sources (`read_source(source, path, labels=None)`):

- ``crohme``      a folder of CROHME InkML (searched recursively) or one file; LaTeX from
                  `<annotation type="truth">`, normalised by `unimumer.latex.normalize`.
- ``mathwriting`` MathWriting InkML, same layout; LaTeX from `normalizedLabel`, else `label`
                  (untokenised, XML-escaped), normalised.
- ``hme100k``     a CoMER/HME100K caption file (`id<TAB>latex` or `id latex ...`, already tokenised) or a
                  folder holding one (`caption.txt`, `labels.txt`, `*_labels.txt`, `*caption*.txt`) plus its
                  images (in `img/`, `images/`, `<stem>_images/`, `train_images/`, `test_images/` or beside it;
                  an id may carry its extension or not).
- ``im2latex``    an Im2LaTeX-v2 JSON / JSONL file (or a folder of them). Accepted shapes: a list of objects,
                  JSONL of objects, or `{"data"|"annotations"|"samples": [...]}`, each object naming its image
                  in `image` / `filename` / `file_name` / `image_path` / `img` and its formula in `formula` /
                  `latex` / `label` / `gt`; or one object mapping image -> formula. Images are relative to
                  the JSON's folder or its `images/` subfolder. Formulas are raw LaTeX and get normalised.
- ``sharegpt``    ShareGPT JSON / JSONL / parquet (or a folder of them), as in Uni-MuMER-Data:
                  `messages`+`images` or `conversations`+`image`; images are paths relative to the file or
                  embedded `{"bytes", "path"}` (parquet). Only vanilla-task records are read (their gpt value is
                  the LaTeX); the other tasks are derived again by the builder.

`labels` (a path, or a dict id -> LaTeX) replaces every sample's LaTeX: an `id<TAB>latex` caption file or a
predictions JSON (`[{img_id, gt}]`). Ids match with or without the `_0` suffix of the 2016 bitmaps.

Samples are lazy: reading an InkML file and normalising LaTeX is the expensive part, so the reader only
lists files and `resolve(sample)` does the rest — `train.build_data` calls it in its worker processes.
Nothing here raises on bad input: each bad item becomes a `Skip` with a short reason.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from train.records import parse_record
from unimumer.ink import Ink, InkError, parse_inkml
from unimumer.latex import LatexError, normalize
from unimumer.tasks import human_prompt

SOURCES = ("crohme", "hme100k", "mathwriting", "im2latex", "sharegpt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CAPTION_NAMES = ("caption.txt", "captions.txt", "labels.txt")
IMAGE_DIRS = ("img", "images", "image", "imgs", "train_images", "test_images")
IMAGE_KEYS = ("image", "filename", "file_name", "image_path", "img", "path")
FORMULA_KEYS = ("formula", "latex", "label", "gt", "text")
LIST_KEYS = ("data", "annotations", "samples", "images")


@dataclass
class Sample:
    id: str
    latex: str | None  # None: read it from the ink's annotations (`label_keys`) in `resolve`
    ink: Ink | None = None
    image_path: Path | None = None
    ink_path: Path | None = None  # InkML to parse in `resolve`
    image_bytes: bytes | None = None  # an embedded image (parquet)
    label_keys: tuple[str, ...] = ()  # annotation types holding the LaTeX, best first
    raw: bool = False  # the LaTeX is untokenised: `resolve` runs `normalize`


@dataclass
class Skip:
    id: str
    reason: str  # a short stable key counted in stats.json, e.g. "missing_image"
    detail: str = ""  # one sentence for the curious


# ---------------------------------------------------------------- helpers


def files_under(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """`path` itself, or every file under it with one of `suffixes`, in a stable (sorted) order."""
    if path.is_file():
        return [path]
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # e.g. a build's .build/ state
        found += [Path(root, n) for n in sorted(names) if n.lower().endswith(suffixes) and not n.startswith(".")]
    return found


def _collapse(text: str) -> str:
    """Already-tokenised LaTeX with its whitespace made canonical (single spaces, no ends)."""
    return " ".join(text.split())


def _split_caption(line: str) -> tuple[str, str]:
    """`id<TAB>latex` or `id latex ...` -> (id, latex)."""
    sep = "\t" if "\t" in line else None
    parts = line.strip().split(sep, 1)
    return parts[0].strip(), (parts[1] if len(parts) > 1 else "")


def load_labels(path) -> dict[str, str]:
    """A caption file (`id<TAB>latex` / `id latex`) or a predictions JSON (`[{img_id, gt}]`) -> id -> LaTeX.

    Ids ending in `_0` (the CROHME 2016 bitmaps) or an image suffix are also stored without it.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    labels: dict[str, str] = {}
    if text.lstrip()[:1] in ("[", "{"):
        data = json.loads(text)
        if isinstance(data, dict):
            labels = {str(k): str(v) for k, v in data.items()}
        else:
            for row in (r for r in data if isinstance(r, dict)):
                key = row.get("img_id", row.get("id", row.get("image_id")))
                latex = row.get("gt", row.get("latex"))
                if key is not None and latex is not None:
                    labels[str(key)] = str(latex)
    else:
        for line in text.splitlines():
            if line.strip():
                key, latex = _split_caption(line)
                labels[key] = latex
    for key in list(labels):  # also match `x` for `x_0` and `x.jpg` (HME100K-style ids)
        for alias in (key[:-2] if key.endswith("_0") else None,
                      os.path.splitext(key)[0] if key.lower().endswith(IMAGE_SUFFIXES) else None):
            if alias:
                labels.setdefault(alias, labels[key])
    return labels


def _label(labels: dict[str, str], sample_id: str) -> str | None:
    return labels.get(sample_id, labels.get(f"{sample_id}_0"))


def _ink_reason(error: InkError) -> str:
    """A stable stats key for an InkError (its message names the file, so it cannot be the key)."""
    message = str(error)
    for needle, reason in (("not valid XML", "bad_xml"), ("not InkML", "bad_xml"), ("is empty", "bad_xml"),
                           ("no traces", "no_traces"), ("point", "bad_points"), ("coordinate", "bad_points"),
                           ("does not exist", "unreadable_file"), ("cannot be read", "unreadable_file")):
        if needle in message:
            return reason
    return "bad_ink"


def resolve(sample: Sample) -> Sample | Skip:
    """Parse the sample's InkML (if any), pick and normalise its LaTeX. Never raises on bad data."""
    ink = sample.ink
    if ink is None and sample.ink_path is not None:
        try:
            ink = parse_inkml(sample.ink_path)
        except InkError as e:
            return Skip(sample.id, _ink_reason(e), str(e))
    latex = sample.latex
    if latex is None:
        annotations = ink.annotations if ink is not None else {}
        latex = next((annotations[k] for k in sample.label_keys if annotations.get(k, "").strip()), None)
        if latex is None:
            return Skip(sample.id, "missing_truth", f"no {' / '.join(sample.label_keys) or 'LaTeX'} annotation")
    if sample.raw:
        try:
            latex = normalize(latex)
        except LatexError as e:
            return Skip(sample.id, "bad_latex", str(e))
    latex = _collapse(latex)
    if not latex:
        return Skip(sample.id, "missing_truth", "the LaTeX is empty")
    return replace(sample, latex=latex, ink=ink, ink_path=None, label_keys=(), raw=False)


# ---------------------------------------------------------------- sources


def read_inkml(path: Path, label_keys: tuple[str, ...]) -> Iterator[Sample]:
    """Every *.inkml under `path`, id = file stem; parsing waits for `resolve`."""
    for file in files_under(path, (".inkml",)):
        yield Sample(id=file.stem, latex=None, ink_path=file, label_keys=label_keys, raw=True)


def _image_index(folder: Path) -> dict[str, Path]:
    """name -> path and stem -> path for the images directly in `folder` (one directory scan)."""
    index: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                path = Path(entry.path)
                index[entry.name] = path
                index.setdefault(path.stem, path)
    return index


def _caption_file(folder: Path) -> Path | None:
    for name in CAPTION_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.glob("*.txt") if "caption" in p.name or p.name.endswith("_labels.txt"))
    return found[0] if found else None


def read_captions(path: Path) -> Iterator[Sample | Skip]:
    """CoMER/HME100K: a caption file of already-tokenised LaTeX plus a folder of images."""
    caption = path if path.is_file() else _caption_file(path)
    if caption is None:
        yield Skip(str(path), "missing_captions", f"no caption file (caption.txt, *_labels.txt) in {path}")
        return
    base = caption.parent
    stem = caption.stem.removesuffix("_labels").removesuffix("_caption")
    candidates = [base / d for d in (*IMAGE_DIRS, f"{stem}_images", stem)] + [base]
    index: dict[str, Path] = {}
    for folder in candidates:
        if folder.is_dir():
            index = _image_index(folder)
            if index:
                break
    with open(caption, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            key, latex = _split_caption(line)
            image = index.get(key) or index.get(Path(key).stem)
            sample_id = Path(key).stem if key.lower().endswith(IMAGE_SUFFIXES) else key
            if image is None:
                yield Skip(sample_id, "missing_image", f"no image named {key} beside {caption.name}")
            else:
                yield Sample(id=sample_id, latex=latex, image_path=image)


def _jsonl_rows(lines: Iterable[str], name: str) -> Iterator[object]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield ValueError(f"line {number} of {name} is not valid JSON.")


def _json_rows(file: Path) -> Iterator[object]:
    """The rows of a JSON list, a `{"data": [...]}` object, an image -> formula object, or JSONL.

    A row that cannot be read comes out as a ValueError (the caller turns it into a Skip).
    """
    if file.suffix == ".jsonl":
        with open(file, encoding="utf-8") as f:
            yield from _jsonl_rows(f, file.name)
        return
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        lines = text.splitlines()
        first = next((line for line in lines if line.strip()), "")
        try:
            json.loads(first)
        except json.JSONDecodeError:
            yield ValueError(f"{file.name} is not valid JSON or JSONL ({e}).")
            return
        yield from _jsonl_rows(lines, file.name)  # JSON Lines under a .json name
        return
    if isinstance(data, dict):
        inner = next((data[k] for k in LIST_KEYS if isinstance(data.get(k), list)), None)
        if inner is not None:
            data = inner
        elif "messages" in data or "conversations" in data:
            data = [data]
        else:
            data = [{"image": k, "formula": v} for k, v in data.items()]
    if not isinstance(data, list):
        yield ValueError(f"{file.name} holds no list of records.")
        return
    yield from data


def _first(row: dict, keys: tuple[str, ...]):
    return next((row[k] for k in keys if row.get(k) not in (None, "")), None)


def _find_image(name: str, base: Path) -> Path:
    """`name` relative to `base`, else in `base/images` (the path is returned even if absent)."""
    path = base / name
    if not path.exists() and (base / "images" / name).exists():
        return base / "images" / name
    return path


def read_im2latex(path: Path) -> Iterator[Sample | Skip]:
    """Im2LaTeX-v2 style JSON: image file + raw formula per row (shapes in the module docstring)."""
    for file in files_under(path, (".json", ".jsonl")):
        for number, row in enumerate(_json_rows(file)):
            where = f"{file.stem}:{number}"
            if isinstance(row, ValueError):
                yield Skip(where, "bad_json", str(row))
                continue
            image = _first(row, IMAGE_KEYS) if isinstance(row, dict) else None
            formula = _first(row, FORMULA_KEYS) if isinstance(row, dict) else None
            if not isinstance(image, str):
                yield Skip(where, "bad_entry", "the row names no image file")
            elif not isinstance(formula, str):
                yield Skip(Path(image).stem, "missing_truth", "the row has no formula")
            else:
                yield Sample(id=Path(image).stem, latex=formula, image_path=_find_image(image, file.parent), raw=True)


def _parquet_rows(file: Path) -> Iterator[object]:
    """Rows of a parquet file, streamed in record batches (pyarrow ships with `datasets`)."""
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=256):
            yield from batch.to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for damaged files
        yield ValueError(f"{file.name} is not a readable parquet file ({e}).")


def _sample_id(image: str) -> str:
    """A readable id from an image path: the path without suffix, `./` and leading folders kept as `_`."""
    stem = os.path.splitext(os.path.normpath(image).lstrip("./"))[0] if image else ""
    return stem.replace("\\", "/").strip("/").replace("/", "_")


def read_sharegpt(path: Path) -> Iterator[Sample | Skip]:
    """Uni-MuMER-Data style ShareGPT records; the vanilla ones give (image, LaTeX)."""
    vanilla = _collapse(human_prompt("vanilla"))
    for file in files_under(path, (".json", ".jsonl", ".parquet")):
        if file.name in ("dataset_info.json", "stats.json"):
            continue
        rows = _parquet_rows(file) if file.suffix == ".parquet" else _json_rows(file)
        for number, row in enumerate(rows):
            where = f"{file.stem}:{number}"
            if isinstance(row, ValueError):
                yield Skip(where, "bad_json", str(row))
                continue
            try:
                images, prompt, latex = parse_record(row)
            except ValueError as e:
                yield Skip(where, "bad_entry", str(e))
                continue
            if _collapse(prompt.replace("<image>", "")) != vanilla:
                yield Skip(where, "not_vanilla", "a record of another task (the builder derives those again)")
                continue
            if not images:
                yield Skip(where, "missing_image", "the record has no image")
                continue
            image = images[0]
            if isinstance(image, dict):  # datasets' Image feature: {"bytes": ..., "path": ...}
                name = image.get("path") or ""
                sample_id = _sample_id(name) or where.replace(":", "_")
                if image.get("bytes"):
                    yield Sample(id=sample_id, latex=latex, image_bytes=image["bytes"])
                elif name:
                    yield Sample(id=sample_id, latex=latex, image_path=file.parent / name)
                else:
                    yield Skip(where, "missing_image", "the record's image has neither bytes nor a path")
            else:
                yield Sample(id=_sample_id(str(image)), latex=latex, image_path=file.parent / str(image))


def read_source(source: str, path, labels=None) -> Iterator[Sample | Skip]:
    """Samples of `source` (one of SOURCES) under `path`; `labels` (path or dict) overrides every LaTeX."""
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {', '.join(SOURCES)}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    table = labels if isinstance(labels, dict) or labels is None else load_labels(labels)
    items: Iterator[Sample | Skip] = {
        "crohme": lambda: read_inkml(path, ("truth",)),
        "mathwriting": lambda: read_inkml(path, ("normalizedLabel", "label")),
        "hme100k": lambda: read_captions(path),
        "im2latex": lambda: read_im2latex(path),
        "sharegpt": lambda: read_sharegpt(path),
    }[source]()
    return items if table is None else _relabel(items, table)


def _relabel(items: Iterator[Sample | Skip], labels: dict[str, str]) -> Iterator[Sample | Skip]:
    """Replace every sample's LaTeX by its label (already tokenised: `resolve` only fixes whitespace)."""
    for item in items:
        if isinstance(item, Sample):
            latex = _label(labels, item.id)
            if latex is None:
                item = Skip(item.id, "no_label", "the id is not in the labels file")
            else:
                item = replace(item, latex=latex, label_keys=(), raw=False)
        yield item
