"""`Recognizer`: handwritten math image in, LaTeX out, with any Uni-MuMER checkpoint.

    from unimumer import Recognizer
    rec = Recognizer.from_pretrained()            # $UNIMUMER_MODEL, else unimumer.hub.DEFAULT_MODEL
    rec = Recognizer.from_pretrained("3b")        # short names of the released models: unimumer.hub.ZOO
    rec.recognize("formula.png").latex
    rec.recognize(image, mode=["tree", "count", "correct"])
    rec.recognize_batch(paths, mode="vanilla", batch_size=16)

Modes (each pass is one generate call with the task's prompt from `unimumer.tasks`):
- vanilla: the LaTeX;  tree: a syntax tree, then the LaTeX;  count: symbol counts, then the LaTeX;
- correct: a first reading, then error_find marks its errors, then error_fix rewrites the marked places
  (skipped when nothing is marked). Combined with tree or count, the first reading comes from them.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, StoppingCriteriaList

from unimumer.confidence import Reading, decode_pieces, latex_confidence, sequence_score
from unimumer.generation import (
    REPETITION_WARNING, Cancelled, GenerationOptions, RepetitionGuard, chat_prompt, image_size, looped,
    visual_token_count,
)
from unimumer.hub import ModelLoadError, download, resolve_model, trained_on_crops, trained_tasks
from unimumer.images import DEFAULT_MAX_PIXELS, ImageError, is_sketch, prepare_image
from unimumer.processor import load_processor
from unimumer.tasks import DELETED, ERROR_START, CorrectionError, consistency_warnings, human_prompt, parse_output
from unimumer.tasks.edl import TAGS, marked_places

MODES = ("vanilla", "tree", "count", "correct")
READINGS = ("tree", "count", "vanilla")  # which first reading `correct` starts from, in order of preference
# The task formats a mode's passes use, and its name in a sentence (a checkpoint may have learned only some)
MODE_TASKS = {"vanilla": ("vanilla",), "tree": ("tree",), "count": ("count",), "correct": ("error_find", "error_fix")}
MODE_NAMES = {"vanilla": "plain recognition", "tree": "Tree-CoT", "count": "symbol counting",
              "correct": "error correction"}
KEEP_CANDIDATE_WARNING = "The correction pass gave no usable answer, so the first reading is kept."
NOTHING_MARKED = "Mark the wrong part of the reading first (with <error_start> <error_end> or <deleted>)."


def mode_names(modes) -> str:
    """The modes' names for a sentence: "Tree-CoT and symbol counting"."""
    return " and ".join(MODE_NAMES[m] for m in modes)


@dataclass
class Alternative:
    """One of the top readings (`alternatives=k`), best first."""

    latex: str
    score: float  # geometric-mean probability of the reading's tokens, by the model itself (0 to 1)
    confidence: list[tuple[str, float]] | None = None  # (LaTeX token, probability), as in RecognitionResult


@dataclass
class RecognitionResult:
    """What `recognize` returns. Extras are None when their mode did not run."""

    latex: str
    mode: str
    tree: str | None = None  # tree mode: the syntax tree lines
    counts: list[tuple[str, int]] | None = None  # count mode: (symbol, n) in first-seen order
    marked: str | None = None  # correct mode: the first reading with <error_start> <error_end> <deleted> tags
    log: list[str] | None = None  # correct mode: REPLACE / INSERT / DELETE operations
    candidate: str | None = None  # correct mode: the first reading
    warnings: list[str] = field(default_factory=list)  # plain sentences: tree/counts disagree, loops, ...
    structured: bool = True  # the final pass had the structure its task asks for
    visual_tokens: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per pass (its share of a batch)
    raw: dict[str, str] = field(default_factory=dict)  # model output per pass
    error: str | None = None  # set instead of raising by recognize_batch(raise_errors=False)
    # With token_scores (or alternatives > 1): each token of `latex` with the probability of its least
    # likely model token; None when it was not asked for.
    confidence: list[tuple[str, float]] | None = None
    alternatives: list[Alternative] | None = None  # alternatives > 1: the first pass's top readings, best first

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.counts is not None:
            out["counts"] = [[token, n] for token, n in self.counts]
        if self.confidence is not None:
            out["confidence"] = [[token, p] for token, p in self.confidence]
        for alternative in out["alternatives"] or []:
            if alternative["confidence"] is not None:
                alternative["confidence"] = [[token, p] for token, p in alternative["confidence"]]
        return out


def normalize_modes(mode) -> tuple[str, ...]:
    """"tree", "tree+count" or ["count", "correct"] -> the modes in canonical order."""
    requested = mode.split("+") if isinstance(mode, str) else list(mode)
    unknown = [m for m in requested if m not in MODES]
    if unknown or not requested:
        raise ValueError(f"Unknown mode {'+'.join(map(str, unknown)) or '(none)'}; choose from {', '.join(MODES)}.")
    return tuple(m for m in MODES if m in requested)


def _device_and_dtype(device: str, dtype) -> tuple[str, torch.dtype]:
    """"auto" -> CUDA when present, else CPU; bfloat16 on CUDA, float32 on CPU. ValueError for bad names."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"Unknown device {device!r}; use cpu, cuda or cuda:N.") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but this machine has no usable CUDA GPU; use the cpu device.")
    if dtype == "auto":
        return device, torch.bfloat16 if kind == "cuda" else torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError("Unknown dtype; use float32, bfloat16 or float16.")
    return device, dtype


def _has_marks(marked: str | None) -> bool:
    tokens = (marked or "").split()
    return ERROR_START in tokens or DELETED in tokens


@dataclass
class _Pass:
    """One generation for one image."""

    text: str
    seconds: float
    visual_tokens: int
    looped: bool
    readings: list[Reading] = field(default_factory=list)  # with scores: every reading, best first


def min_pixels(processor) -> int:
    """The smallest image area the checkpoint's processor produces (it scales smaller images up)."""
    return int(processor.image_processor.size["shortest_edge"])


def training_max_pixels(processor) -> int:
    """The image area the checkpoint was trained at: 512x512 (every released checkpoint), or its
    processor's lower cap (a model trained by this kit records its cap there)."""
    # transformers 5 keeps the cap in `size["longest_edge"]` (older configs: `max_pixels`)
    size = getattr(processor.image_processor, "size", None) or {}
    trained = size.get("longest_edge") or getattr(processor.image_processor, "max_pixels", None) or DEFAULT_MAX_PIXELS
    return max(min_pixels(processor), min(DEFAULT_MAX_PIXELS, trained))


class Recognizer:
    """A loaded checkpoint plus its processor; see the module docstring."""

    def __init__(
        self,
        model,
        processor,
        *,
        model_name: str = "",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        notice: str | None = None,
        is_bundled: bool = False,
        crop_uploads: bool = False,
        tasks: frozenset[str] | None = None,
    ):
        if max_pixels < min_pixels(processor):
            raise ValueError(
                f"max_pixels must be at least {min_pixels(processor)}, the processor's smallest image area."
            )
        self.model = model.eval() if isinstance(model, torch.nn.Module) else model  # vLLM: an engine
        self.processor = processor
        self.model_name = model_name
        self.max_pixels = max_pixels
        self.notice = notice
        self.is_bundled = is_bundled
        self.crop_uploads = crop_uploads  # trained on ink crops (this kit's --crop_to_ink): crop every input
        self.tasks = tasks  # the task formats it learned (its training record); None = all five (released)
        tokenizer = processor.tokenizer
        self.eos_token_ids = [
            i for i in dict.fromkeys(tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])) if i is not None
        ]
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[-1]

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        device: str = "auto",
        dtype="auto",
        max_pixels: int | None = None,
    ) -> "Recognizer":
        """Load a checkpoint: a folder, "bundled", a Hub id, a short name (unimumer.hub.ZOO), or None for
        $UNIMUMER_MODEL / the default released model.

        device "auto" is CUDA when present, else CPU; dtype "auto" is bfloat16 on CUDA, float32 on CPU.
        max_pixels None is the training resolution: 512x512, or less when the checkpoint's processor
        caps images lower (the bundled small model was trained on smaller images).
        Raises ModelLoadError with one sentence when the model cannot be found or loaded.
        """
        device, dtype = _device_and_dtype(device, dtype)
        choice = resolve_model(model)
        path = download(choice)
        try:
            processor = load_processor(path)
            network = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as error:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            raise ModelLoadError(f"Could not load the model from {path}: {lines[0]}") from None
        return cls(
            network,
            processor,
            model_name=choice.name,
            max_pixels=max_pixels or training_max_pixels(processor),
            notice=choice.notice,
            is_bundled=choice.is_bundled,
            crop_uploads=trained_on_crops(path),
            tasks=trained_tasks(path),
        )

    @property
    def device(self) -> str:
        return str(self.model.device)

    def save_pretrained(self, out_dir) -> Path:
        """Write model and processor so that `Recognizer.from_pretrained(out_dir)` loads them back."""
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        return out

    def untrained_modes(self, mode="vanilla") -> tuple[str, ...]:
        """The modes of `mode` whose task formats this checkpoint never learned (its training record says
        which it did); none for the released checkpoints."""
        if self.tasks is None:
            return ()
        return tuple(m for m in normalize_modes(mode) if not set(MODE_TASKS[m]) <= self.tasks)

    def untrained_note(self, mode="vanilla") -> str | None:
        """One sentence for the modes of `mode` this checkpoint was not trained for, or None."""
        untrained = self.untrained_modes(mode)
        if not untrained:
            return None
        learned = ", ".join(sorted(self.tasks))
        return (f"This model was not trained for {mode_names(untrained)} (it learned {learned}), "
                "so expect a worse answer than the plain one.")

    def crops(self, image) -> bool:
        """Whether an input is cropped to its ink by default: a sketch canvas (Gradio dict) is; anything else
        is sent whole, as the released checkpoints were trained, unless this one was trained on crops."""
        return is_sketch(image) or self.crop_uploads

    def prepare(self, image, crop: bool | None = None):
        """Any supported input (path, bytes, PIL, numpy, Gradio sketch dict) -> the model's RGB input image
        (crop None: as `crops` decides)."""
        return prepare_image(image, max_pixels=self.max_pixels, crop=self.crops(image) if crop is None else crop)

    def visual_tokens(self, image) -> int:
        """Visual tokens the model spends on a prepared image, as its processor counts them (sides rounded
        to its patch_size x merge_size)."""
        return visual_token_count(self.processor, image.width, image.height, image.width * image.height)

    def recognize(self, image, mode="vanilla", crop: bool | None = None, **options) -> RecognitionResult:
        """Recognise one image; `options` are GenerationOptions fields (max_new_tokens, do_sample, ...).
        crop as in `recognize_batch`. Raises ImageError (one sentence) for unreadable, huge or blank images."""
        return self.recognize_batch([image], mode, batch_size=1, crop=crop, **options)[0]

    def recognize_batch(
        self,
        images,
        mode="vanilla",
        batch_size: int = 8,
        *,
        raise_errors: bool = True,
        crop: bool | None = None,
        **options,
    ) -> list[RecognitionResult]:
        """Recognise many images, `batch_size` per generate call (similar sizes batched together).

        crop: cut each image to its ink first (None: as `prepare` decides: sketch canvases, and every input
        of a checkpoint trained on crops). With raise_errors=False an image that cannot be used gets a
        result with `error` set instead.
        """
        modes = normalize_modes(mode)
        settings = GenerationOptions(**options)
        name = "+".join(modes)
        results: list[RecognitionResult | None] = [None] * len(images)
        prepared, seconds = [], []
        for i, image in enumerate(images):
            start = time.perf_counter()
            try:
                prepared.append((i, self.prepare(image, crop)))
                seconds.append(time.perf_counter() - start)
            except ImageError as error:
                if raise_errors:
                    raise
                results[i] = RecognitionResult(latex="", mode=name, structured=False, error=str(error))
        if prepared:
            done = self._recognize_prepared([image for _, image in prepared], modes, settings, batch_size)
            for (i, _), result, prep in zip(prepared, done, seconds):
                result.seconds = round(result.seconds + prep, 4)
                results[i] = result
        return results

    # -- the mode pipeline ---------------------------------------------------------------------------

    def _recognize_prepared(self, images, modes, settings, batch_size) -> list[RecognitionResult]:
        name = "+".join(modes)
        results = [RecognitionResult(latex="", mode=name) for _ in images]
        readings = [m for m in READINGS if m in modes] or ["vanilla"]
        parsed: dict[str, list] = {}
        passes_of: dict[str, list[_Pass]] = {}
        for task in readings:
            passes = self._run(task, images, [human_prompt(task)] * len(images), settings, batch_size)
            passes_of[task] = passes
            parsed[task] = [parse_output(task, p.text) for p in passes]
            for result, p, out in zip(results, passes, parsed[task]):
                self._record(result, task, p)
                if task != "vanilla":
                    result.warnings.extend(consistency_warnings(out))
                if task == "tree":
                    result.tree = out.tree
                elif task == "count":
                    result.counts = out.counts
        for i, result in enumerate(results):
            runs = [(task, parsed[task][i]) for task in readings]
            task, first = next(((task, out) for task, out in runs if out.structured), runs[0])
            result.latex, result.structured = first.latex, first.structured
            if settings.scored:
                self._score(result, task, passes_of[task][i], settings)
        if "correct" in modes:
            self._correct(images, results, settings, batch_size)
        untrained = self.untrained_note(modes)
        for result in results:
            result.warnings.extend([untrained] if untrained else [])
            result.warnings = list(dict.fromkeys(result.warnings))
        return results

    @staticmethod
    def _score(result: RecognitionResult, task: str, p: _Pass, settings) -> None:
        """The confidence of the result's LaTeX, and its alternatives, from the pass that wrote it."""
        best = p.readings[0] if p.readings else None
        result.confidence = latex_confidence(best.pieces, result.latex) if best else None
        if settings.readings(task) > 1:
            alternatives = []
            for reading in p.readings:
                latex = parse_output(task, reading.text).latex
                if latex and all(latex != a.latex for a in alternatives):
                    alternatives.append(Alternative(latex, reading.score, latex_confidence(reading.pieces, latex)))
            result.alternatives = alternatives

    def _correct(self, images, results, settings, batch_size) -> None:
        """error_find on each first reading, then error_fix where something was marked."""
        prompts = [human_prompt("error_find", candidate=r.latex) for r in results]
        for result, p in zip(results, self._run("error_find", images, prompts, settings, batch_size)):
            self._record(result, "error_find", p)
            result.candidate = result.latex
            result.marked = parse_output("error_find", p.text).marked
        todo = [i for i, r in enumerate(results) if _has_marks(r.marked)]
        self._fix([images[i] for i in todo], [results[i] for i in todo], settings, batch_size)

    def _fix(self, images, results, settings, batch_size) -> None:
        """error_fix on each result's `marked` formula; the corrected LaTeX replaces `latex` when usable."""
        prompts = [human_prompt("error_fix", marked=r.marked) for r in results]
        for result, p in zip(results, self._run("error_fix", images, prompts, settings, batch_size)):
            self._record(result, "error_fix", p)
            fixed = parse_output("error_fix", p.text, marked=result.marked)
            result.log = fixed.operations
            result.warnings.extend(consistency_warnings(fixed))
            if fixed.structured and fixed.latex.strip():
                result.latex, result.structured = fixed.latex, True
                if settings.scored:
                    self._score(result, "error_fix", p, settings)
            else:
                result.warnings.append(KEEP_CANDIDATE_WARNING)

    def fix(self, image, marked: str, crop: bool | None = None, **options) -> RecognitionResult:
        """Correct a reading whose wrong places are marked (Uni-MuMER's error_fix pass, as the `correct`
        mode runs it after error_find): `marked` is the reading with `<error_start> … <error_end>` around
        wrong tokens and `<deleted>` where something is missing (`unimumer.tasks.edl.mark_tokens` writes
        them from token spans). `candidate` is the reading, `log` the model's operations; when the model
        gives no usable correction the reading is kept with a warning. ValueError (one sentence) when
        nothing is marked or the tags do not pair up; ImageError as in `recognize`."""
        marked = " ".join((marked or "").split())
        try:
            marked_places(marked)
        except CorrectionError as error:
            raise ValueError(str(error)) from None
        if not _has_marks(marked):
            raise ValueError(NOTHING_MARKED)
        settings = GenerationOptions(**options)
        start = time.perf_counter()
        prepared = self.prepare(image, crop)
        candidate = " ".join(tok for tok in marked.split() if tok not in TAGS)
        result = RecognitionResult(latex=candidate, mode="fix", marked=marked, candidate=candidate)
        result.seconds = time.perf_counter() - start
        self._fix([prepared], [result], settings, 1)
        result.seconds = round(result.seconds, 4)
        untrained = self.untrained_note("correct")
        result.warnings.extend([untrained] if untrained else [])
        result.warnings = list(dict.fromkeys(result.warnings))
        return result

    @staticmethod
    def _record(result: RecognitionResult, task: str, p: _Pass) -> None:
        result.raw[task] = p.text
        result.timings[task] = round(p.seconds, 4)
        result.seconds += p.seconds
        result.visual_tokens = p.visual_tokens
        if p.looped:
            result.warnings.append(REPETITION_WARNING)

    # -- batched generation ----------------------------------------------------------------------------

    def _run(self, task, images, prompts, settings, batch_size) -> list[_Pass]:
        """Generate for every (image, prompt), similar image sizes and prompt lengths batched together."""
        order = sorted(range(len(images)), key=lambda i: (images[i].width * images[i].height, len(prompts[i])))
        out: list[_Pass | None] = [None] * len(images)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start : start + max(1, batch_size)]
            passes = self._generate(task, [images[i] for i in chunk], [prompts[i] for i in chunk], settings)
            for i, p in zip(chunk, passes):
                out[i] = p
        return out

    def _generate(self, task, images, prompts, settings: GenerationOptions) -> list[_Pass]:
        """One generate call for a batch (left padded). The vLLM backend replaces this method."""
        start = time.perf_counter()
        texts = [chat_prompt(self.processor, prompt) for prompt in prompts]
        size = image_size(self.processor, max(image.width * image.height for image in images))
        inputs = self.processor(
            text=texts, images=images, size=size, padding=True, padding_side="left", return_tensors="pt"
        )  # left padding: every row's generation continues at the right edge
        inputs = inputs.to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        criteria = StoppingCriteriaList([RepetitionGuard(prompt_length)] if settings.loop_guard else [])
        if settings.cancel is not None:
            criteria.append(Cancelled(settings.cancel))
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,  # includes mm_token_type_ids: without it M-RoPE silently degrades to 1-D positions
                generation_config=settings.config(task, self.eos_token_ids, self.pad_token_id),
                stopping_criteria=criteria,
            )
            sequences = output.sequences if settings.scored else output
            logprobs = None
            if settings.scored:  # per generated position; beams are followed back through beam_indices
                logprobs = self.model.compute_transition_scores(
                    sequences, output.logits, getattr(output, "beam_indices", None), normalize_logits=True
                ).float().tolist()
        merge = self.processor.image_processor.merge_size ** 2
        tokens = [int(t * h * w) // merge for t, h, w in inputs["image_grid_thw"].tolist()]
        share = (time.perf_counter() - start) / len(images)
        rows = sequences[:, prompt_length:].tolist()
        k = len(rows) // len(images)  # the readings of image i are rows i*k ... i*k + k - 1
        passes = []
        for i, visual in enumerate(tokens):
            decoded = [self._decoded(rows[j], None if logprobs is None else logprobs[j])
                       for j in range(i * k, i * k + k)]
            if logprobs is not None:
                decoded.sort(key=lambda d: -d[0].score)
            best, ids, ended = decoded[0]
            readings = []  # best first, each text once (samples repeat)
            for reading, _, _ in decoded if logprobs is not None else []:
                if all(reading.text != kept.text for kept in readings):
                    readings.append(reading)
            passes.append(_Pass(best.text, share, visual, looped=not ended and looped(ids), readings=readings))
        return passes

    def _decoded(self, row: list[int], logprobs: list[float] | None) -> tuple[Reading, list[int], bool]:
        """(the reading, its token ids without the end token, whether it ended) of one generated row."""
        ends = [k for k, t in enumerate(row) if t in self.eos_token_ids]
        ids = row[: ends[0]] if ends else row
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if logprobs is None:
            return Reading(text), ids, bool(ends)
        scored = logprobs[: len(ids) + bool(ends)]  # the end token's probability counts in the score
        pieces = decode_pieces(self.processor.tokenizer, ids, scored[: len(ids)])
        return Reading(text, pieces, round(sequence_score(scored), 4)), ids, bool(ends)
