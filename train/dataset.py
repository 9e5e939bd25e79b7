"""Training records -> model inputs.

Reads ShareGPT JSONL records (`{"images": [path], "messages": [human, gpt]}`, image paths relative to
the file's folder; the released parquet's `conversations` / `image` names are accepted too), mixes
files with optional per-file weights, and encodes each record exactly as `unimumer.Recognizer` prompts
at inference (`unimumer.generation.chat_prompt`, same image preparation and processor sizing: images
whole and scaled to the cap, as upstream trained, or cropped to the ink like sketches with `crop`;
InkML files drawn on the sketchpad page afresh each time by train.sketch, and cropped), followed by
the target and the end of the assistant turn. Only the target and the end-of-turn tokens
are learned: the prompt (system/user turns, image tokens), a record's `given` start of the answer
(train.records.GIVEN) and the padding are labelled -100.
"""
from __future__ import annotations

import json
import logging
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from train.records import GIVEN, IMAGE_MARK, parse_record
from train.sketch import sketch_image
from unimumer.generation import chat_prompt, image_size, visual_token_count
from unimumer.images import DEFAULT_MAX_PIXELS, ImageError, load_image, prepare_image, training_size
from unimumer.ink import SKETCH_PAGE, InkError, parse_inkml

logger = logging.getLogger(__name__)
INKML = ".inkml"  # records of train.build_data --ink: drawn afresh at every use (train.sketch)

IGNORE_INDEX = -100  # label of tokens that do not count in the loss


class RecordError(ValueError):
    """A malformed training record or data file; str(e) is one sentence naming the file and line."""


@dataclass(frozen=True)
class Example:
    image: Path  # absolute
    prompt: str  # the human turn without the <image> marker
    target: str  # the learned part of the gpt turn
    source: str  # name of the JSONL file it came from
    given: str = ""  # the start of the gpt turn shown to the model but not learned


def to_example(record: dict, root: Path, source: str = "") -> Example:
    """One ShareGPT record (either spelling, see train.records.parse_record) -> Example; image paths are
    relative to `root`. Raises ValueError when it is not a one-image record with a prompt and a target."""
    images, prompt, target = parse_record(record)
    if len(images) != 1 or not isinstance(images[0], str):
        raise ValueError("expected exactly one image path")
    if not prompt.startswith(IMAGE_MARK) or prompt.count(IMAGE_MARK) != 1:
        raise ValueError(f"the human turn must start with one {IMAGE_MARK} marker")
    given = record.get(GIVEN) or ""
    if not isinstance(given, str) or not target.startswith(given):
        raise ValueError(f"`{GIVEN}` must be the start of the gpt answer")
    if not target[len(given):].strip():
        raise ValueError("the target is empty" if not given else f"nothing of the answer is left after `{GIVEN}`")
    return Example(image=(root / images[0]).resolve(), prompt=prompt[len(IMAGE_MARK):], target=target[len(given):],
                   source=source, given=given)


def read_jsonl(path: Path) -> list[Example]:
    """Every record of one JSONL file; a bad line raises RecordError naming the file and line."""
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                examples.append(to_example(json.loads(line), path.parent, path.stem))
            except ValueError as error:  # json.JSONDecodeError is one
                raise RecordError(f"{path}:{number}: not a ShareGPT image record ({error}).") from None
    return examples


def data_files(sources: list[str | Path], suffix: str = ".jsonl") -> list[Path]:
    """Folders -> their sorted `*<suffix>` files; files are kept as given."""
    files = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(source.glob(f"*{suffix}"))
            if not found:
                raise RecordError(f"{source} has no *{suffix} files (build one with python -m train.build_data).")
            files += found
        elif source.is_file():
            files.append(source)
        else:
            raise RecordError(f"{source} does not exist.")
    return files


def read_mix(path: Path) -> list[tuple[Path, float]]:
    """A mix spec: YAML or JSON mapping `file.jsonl -> weight`, files relative to the spec's folder."""
    import yaml

    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or not spec:
        raise RecordError(f"{path} must map JSONL files to weights, e.g. 'crohme_vanilla.jsonl: 1.0'.")
    mix = []
    for name, weight in spec.items():
        if not isinstance(weight, (int, float)) or weight < 0:
            raise RecordError(f"{path}: the weight of {name} must be a number >= 0.")
        mix.append(((path.parent / name).resolve(), float(weight)))
    return mix


def mix_examples(mix: list[tuple[Path, float]], seed: int = 0) -> list[Example]:
    """The records of every file, each file repeated `weight` times (a fraction takes a random subset)."""
    rng = random.Random(seed)
    examples = []
    for path, weight in mix:
        records = read_jsonl(path)
        whole, part = divmod(weight, 1.0)
        examples += records * int(whole)
        examples += rng.sample(records, round(part * len(records)))
    return examples


# ---- augmentation: cheap handwriting-like variation, applied before prepare_image --------------------


def augment_image(image: Image.Image, rng: random.Random = random) -> Image.Image:  # type: ignore[assignment]
    """Random scale, small rotation, stroke thickening/thinning and an elastic warp (each half the time).

    Works on dark ink on white (what the data builder renders). `random` as the default rng is safe with
    DataLoader workers: torch reseeds Python's `random` in every worker.
    """
    image = image.convert("RGB")
    if rng.random() < 0.5:  # scale
        factor = rng.uniform(0.75, 1.25)
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        image = image.resize(size, Image.BILINEAR)
    if rng.random() < 0.5:  # rotation, white corners
        image = image.rotate(rng.uniform(-5, 5), Image.BILINEAR, expand=True, fillcolor="white")
    if rng.random() < 0.5:  # stroke width: min filter grows dark ink, max filter shrinks it
        if rng.random() < 0.6:
            image = image.filter(ImageFilter.MinFilter(3))
        else:
            thinner = image.filter(ImageFilter.MaxFilter(3))
            image = thinner if ink_pixels(thinner) >= ink_pixels(image) // 2 else image  # never erase thin strokes
    if rng.random() < 0.5:
        image = elastic(image, rng)
    return image


def ink_pixels(image: Image.Image) -> int:
    """Dark pixels (grey level < 128)."""
    return sum(image.convert("L").histogram()[:128])


def elastic(image: Image.Image, rng: random.Random, cell: int = 32, strength: float = 0.12) -> Image.Image:
    """Piecewise-bilinear warp: a grid of `cell`-pixel quads whose corners move by up to strength*cell."""
    w, h = image.size
    nx, ny = max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell))
    jitter = strength * cell
    # Source corner of every grid point; the border stays put so the image keeps its frame.
    points = {}
    for j in range(ny + 1):
        for i in range(nx + 1):
            x, y = min(i * cell, w), min(j * cell, h)
            inside = 0 < i < nx and 0 < j < ny
            points[i, j] = (x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter)) if inside else (x, y)
    mesh = []
    for j in range(ny):
        for i in range(nx):
            box = (i * cell, j * cell, min((i + 1) * cell, w), min((j + 1) * cell, h))
            quad = (*points[i, j], *points[i, j + 1], *points[i + 1, j + 1], *points[i + 1, j])
            mesh.append((box, quad))
    return image.transform(image.size, Image.MESH, mesh, Image.BILINEAR, fillcolor="white")


# ---- encoding ---------------------------------------------------------------------------------------


class SFTDataset(torch.utils.data.Dataset):
    """Examples -> {input_ids, attention_mask, labels, mm_token_type_ids, pixel_values, image_grid_thw}.

    `lengths` (for length-grouped batches) is estimated without decoding images: prompt and target
    tokens plus the visual tokens the processor would give each image's header size after the area cap
    (a crop, `crop=True`, only makes images smaller). Records whose prompt alone exceeds `cutoff_len` are
    dropped (logged); a long target is cut at `cutoff_len`.
    """

    def __init__(
        self,
        examples: list[Example],
        processor,
        cutoff_len: int = 2048,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        augment: bool = False,
        crop: bool = False,
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.cutoff_len = cutoff_len
        self.max_pixels = max_pixels
        self.augment = augment
        self.crop = crop
        self.size = image_size(processor, max_pixels)  # the processor's rounding, as unimumer.Recognizer uses it
        self.end_of_turn = self.tokenizer(assistant_suffix(processor), add_special_tokens=False)["input_ids"]
        lengths, prompt_lengths = self._estimate_lengths(examples)
        keep = [i for i, n in enumerate(prompt_lengths) if n < cutoff_len]
        if len(keep) < len(examples):
            logger.warning("Dropped %d records whose prompt exceeds %d tokens.", len(examples) - len(keep), cutoff_len)
        self.examples = [examples[i] for i in keep]
        self.lengths = [min(lengths[i], cutoff_len) for i in keep]

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def aspects(self) -> list[float]:
        """Each record's page aspect (`page_aspect`), for batches of alike pages: measured when a sampler first
        asks, in threads like the header reads of `lengths` (a run without length-grouping never pays)."""
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(page_aspect, (e.image for e in self.examples), chunksize=256))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        example = self.examples[index]
        try:
            image = self._image(example.image)
        except ImageError as error:
            raise RecordError(f"{example.image} ({example.source}): {error}") from None
        prompt = self.processor(
            text=[chat_prompt(self.processor, example.prompt)], images=[image], size=self.size, return_tensors="pt"
        )
        # The given start of the answer is read like the prompt: in the input, not in the loss.
        given_ids, target_ids = self._token_ids([example.given, example.target])
        prompt_ids = prompt["input_ids"][0].tolist() + given_ids
        target_ids = target_ids + self.end_of_turn
        target_ids = target_ids[: max(0, self.cutoff_len - len(prompt_ids))]
        input_ids = prompt_ids + target_ids
        text_ids = len(input_ids) - prompt["mm_token_type_ids"].shape[1]
        return {
            "input_ids": torch.tensor(input_ids),
            "attention_mask": torch.ones(len(input_ids), dtype=torch.long),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt_ids) + target_ids),
            # Image positions get M-RoPE only when the model sees these (FACTS: pass them in training too).
            "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"][0], torch.zeros(text_ids, dtype=torch.long)]),
            "pixel_values": prompt["pixel_values"],
            "image_grid_thw": prompt["image_grid_thw"],
        }

    def _image(self, path: Path) -> Image.Image:
        """The model input image, as unimumer.Recognizer prepares it (after augmentation, if on). An InkML
        file is drawn on the app's sketchpad page (varied when augmenting) and cropped like a sketch."""
        if path.suffix == INKML:
            try:
                page = sketch_image(parse_inkml(path), random, augment=self.augment)
            except InkError as error:
                raise ImageError(str(error)) from None
            return prepare_image(page, max_pixels=self.max_pixels, crop=True)
        original = load_image(path)
        if self.augment:
            try:
                return prepare_image(augment_image(original), max_pixels=self.max_pixels, crop=self.crop)
            except ImageError:  # the variation lost the ink: train on the original instead
                pass
        return prepare_image(original, max_pixels=self.max_pixels, crop=self.crop)

    def _estimate_lengths(self, examples: list[Example]) -> tuple[list[int], list[int]]:
        prompts = sorted({e.prompt for e in examples})
        prompt_tokens = dict(zip(prompts, map(len, self._token_ids([chat_prompt(self.processor, p) for p in prompts]))))
        target_tokens = map(len, self._token_ids([e.target for e in examples]))
        with ThreadPoolExecutor(8) as pool:  # header reads only; threads hide file-system latency
            visual = list(pool.map(self._visual_tokens, (e.image for e in examples), chunksize=256))
        givens = sorted({e.given for e in examples})  # mostly "": tokenize each distinct one once
        given_tokens = dict(zip(givens, map(len, self._token_ids(givens))))
        prompt_lengths = [prompt_tokens[e.prompt] + given_tokens[e.given] + v for e, v in zip(examples, visual)]
        lengths = [p + t + len(self.end_of_turn) for p, t in zip(prompt_lengths, target_tokens)]
        return lengths, prompt_lengths

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def _visual_tokens(self, path: Path) -> int:
        """Visual tokens of an image of this size after the area cap, as the processor counts them (1 on an
        unreadable header)."""
        try:
            if path.suffix == INKML:  # drawn on the sketchpad page, then cropped: at most the page
                width, height = training_size(*SKETCH_PAGE, self.max_pixels)
            else:
                with Image.open(path) as image:
                    width, height = training_size(*image.size, self.max_pixels)
        except OSError:
            return 1  # the error surfaces with a clear message when the record is loaded
        return visual_token_count(self.processor, width, height, self.max_pixels)


def page_aspect(path: Path) -> float:
    """log(width / height) of the page a record's image becomes, estimated without drawing it: the ink's
    extent for InkML (a sketch is cropped to its ink), the header's size for an image; 0 when unreadable."""
    try:
        if path.suffix == INKML:
            width, height = np.ptp(np.concatenate(parse_inkml(path).traces), axis=0)
            margin = 0.05 * max(width, height, 1e-9)  # a dash or a "1" still gets a page of some height or width
            return math.log((width + margin) / (height + margin))
        with Image.open(path) as image:
            return math.log(image.width / image.height)
    except (OSError, InkError, ValueError):
        return 0.0  # the error surfaces with a clear message when the record is loaded


def grouping_keys(lengths: list[int], aspects: list[float], bucket: int = 16) -> list[int]:
    """Sort keys that batch alike records: by length in steps of `bucket` tokens (a batch is padded to its
    longest), then by the page's shape (ConvMer pads every page of a batch to the tallest and the widest:
    pages in random shapes tripled its encoder's work)."""
    rank = [0] * len(aspects)
    for r, i in enumerate(sorted(range(len(aspects)), key=aspects.__getitem__)):
        rank[i] = r
    return [(n // bucket) * len(aspects) + r for n, r in zip(lengths, rank)]


def assistant_suffix(processor) -> str:
    """The text the chat template writes after an assistant message (`<|im_end|>\\n` in ChatML)."""
    sentinel = "\x00TARGET\x00"
    prompt = chat_prompt(processor, "x")
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]},
        {"role": "assistant", "content": [{"type": "text", "text": sentinel}]},
    ]
    full = processor.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt) or sentinel not in full:
        raise ValueError("The chat template renders the user turn differently with an answer attached.")
    return full.split(sentinel, 1)[1]


@dataclass
class Collator:
    """Right-pads a batch; labels pad with -100, pixel patches and grids are concatenated."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        pad = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX, "mm_token_type_ids": 0}
        longest = max(len(f["input_ids"]) for f in features)
        batch = {
            key: torch.stack(
                [torch.nn.functional.pad(f[key], (0, longest - len(f[key])), value=value) for f in features]
            )
            for key, value in pad.items()
        }
        batch["pixel_values"] = torch.cat([f["pixel_values"] for f in features])
        batch["image_grid_thw"] = torch.cat([f["image_grid_thw"] for f in features])
        return batch


def target_latex(target: str) -> str:
    """The final LaTeX of any task's target: its last line (DESIGN §3)."""
    return target.rstrip("\n").rsplit("\n", 1)[-1].strip()
